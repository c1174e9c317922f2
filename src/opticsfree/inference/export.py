r"""Export a trained run as one self-contained ONNX graph: ``opticsfree export``.

The graph (:class:`DeployableGraph`) takes a batch of preprocessed captures, uint8
``(batch, C, size, size)`` (or float32 in [0, 1] with ``input_dtype="float"``), and returns

- ``posterior`` (batch, classes): :math:`\operatorname{softmax}_c(s_c / T + \log\pi_c)`, the
  run's likelihood with its fitted temperature and the prior, prototypes baked in;
- metric runs: ``embedding`` (batch, D), the L2-normalised embedding, and ``distance`` (batch,),
  the distance to the nearest class prototype (compare with the ``threshold`` in the metadata
  for the reject option);
- ``ce`` runs: ``logits`` (batch, classes) of the classifier head.

The batch size is dynamic. The class names, input shape and dtype, preprocessing, temperature,
prior and threshold are stored in the model's metadata (``metadata_props``, keys
``opticsfree.*``; docs/formats.md, "Exported models").

At export the graph is checked with onnxruntime against PyTorch on a sample of the run's test
captures: the predicted classes must agree on at least :data:`MIN_AGREEMENT` of them and the
posteriors differ by at most :data:`MAX_POSTERIOR_DIFF`; otherwise nothing is written and
:class:`ExportError` says by how much it failed. With ``int8=True`` a quantised copy is written
beside it with its measured accuracy change and size: onnxruntime's dynamic quantiser by default
(int8 weights of the convolutions and matrix products up to the embedding, activations
quantised at run time), or its static quantiser (QDQ; activation ranges calibrated on the run's
train captures), which runs faster on CPUs; the prototype distances and the softmax stay
float32 in both.

onnx and onnxruntime are the optional extra ``opticsfree[export]`` (:func:`require_onnx`).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opticsfree import __version__
from opticsfree.errors import ConfigError, DataError, OpticsfreeError
from opticsfree.inference.bundle import Classifier

#: Export formats (``--format``).
FORMATS = ("onnx",)
#: Input dtypes of the exported graph (``--input``).
INPUT_DTYPES = ("uint8", "float")
#: int8 quantisation methods (``--int8-method``): onnxruntime's dynamic or static quantiser.
INT8_METHODS = ("dynamic", "static")
#: Train captures the static quantiser calibrates its activation ranges on.
N_CALIBRATION = 512
#: ONNX opset of the exported graph.
OPSET = 17
#: Verification: least fraction of sampled captures whose predicted class must agree (fp32).
MIN_AGREEMENT = 0.999
#: Verification: largest absolute difference of any posterior probability (fp32).
MAX_POSTERIOR_DIFF = 1e-4
#: Test captures sampled for the verification (all when the split has fewer).
DEFAULT_VERIFY = 2000
#: How to install the optional dependencies.
INSTALL_HINT = "pip install 'opticsfree[export]' (or: pip install onnx onnxruntime)"


class ExportError(OpticsfreeError):
    """The exported graph does not reproduce the PyTorch model (nothing was written)."""


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or a one-line error saying how to install them.

    Raises:
        ConfigError: either package is missing.
    """
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ConfigError(f"export needs the optional packages onnx and onnxruntime "
                          f"({e.name} is not installed): {INSTALL_HINT}") from None
    return onnx, onnxruntime


def _torch_module_class() -> type:
    import torch

    class DeployableGraph(torch.nn.Module):
        """Model + prototypes + temperature + prior: captures in, posteriors out."""

        def __init__(self, classifier: Classifier):
            super().__init__()
            self.net = classifier.model.model
            self.metric = classifier.likelihood == "metric"
            self.inv_t = float(1.0 / classifier.temperature)
            self.register_buffer("log_prior", torch.as_tensor(classifier.log_prior,
                                                              dtype=torch.float32))
            if self.metric:
                p = torch.as_tensor(classifier.prototypes, dtype=torch.float32)
                self.register_buffer("prototypes_t", p.t().contiguous())
                self.register_buffer("prototypes_sq", (p * p).sum(1))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = images  # the model's InputNorm scales uint8 by 1/255, takes float as 0..1
            if not self.metric:
                logits = self.net.logits(x)
                post = torch.softmax(logits * self.inv_t + self.log_prior, dim=1)
                return post, logits
            e = self.net.encode(x, "lensless")
            d2 = ((e * e).sum(1, keepdim=True) + self.prototypes_sq
                  - 2.0 * (e @ self.prototypes_t)).clamp_min(0.0)
            post = torch.softmax(-d2 * self.inv_t + self.log_prior, dim=1)
            return post, e, d2.min(dim=1).values.sqrt()

    return DeployableGraph


def deployable_graph(classifier: Classifier, input_dtype: str = "uint8") -> Any:
    """The ``torch.nn.Module`` that is exported (see the module docstring), eval mode.

    The model takes uint8 or float images alike (its input standardisation scales uint8 by
    1/255); the dtype of the example traced at export fixes the graph's input type, so
    ``input_dtype`` is only checked here.
    """
    if input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"--input: expected one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    return _torch_module_class()(classifier).eval()


def output_names(classifier: Classifier) -> list[str]:
    """The graph's outputs, in order."""
    return ["posterior", "embedding", "distance"] if classifier.likelihood == "metric" \
        else ["posterior", "logits"]


def metadata(classifier: Classifier, input_dtype: str) -> dict[str, str]:
    """The ``metadata_props`` of the exported model (string values; JSON where structured)."""
    pre = classifier.preprocessing
    shape = ["batch", pre.channels, pre.size, pre.size]
    meta = {
        "classes": json.dumps(classifier.classes),
        "input": json.dumps({"name": "images", "shape": shape,
                             "dtype": "uint8" if input_dtype == "uint8" else "float32",
                             "range": "0..255" if input_dtype == "uint8" else "0..1",
                             "layout": "NCHW"}),
        "outputs": json.dumps(output_names(classifier)),
        "preprocessing": json.dumps({**pre.to_json(), "description": pre.describe()}),
        "likelihood": classifier.likelihood,
        "temperature": repr(float(classifier.temperature)),
        "temperature_source": classifier.temperature_source or "none (T = 1: not fitted)",
        "prior": json.dumps({"name": classifier.prior_name,
                             "probabilities": [float(p) for p in classifier.prior]}),
        "threshold": "" if classifier.threshold is None else repr(float(classifier.threshold)),
        "run": str(classifier.run),
        "epoch": str(classifier.epoch),
        "opticsfree_version": __version__,
    }
    return {f"opticsfree.{k}": v for k, v in meta.items()}


def _torch_export(graph: Any, example: Any, path: Path | Any, outputs: list[str]) -> None:
    import torch

    dynamic = {"images": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(graph, (example,), path if hasattr(path, "write") else str(path),
                          dynamo=False, input_names=["images"],
                          output_names=outputs, dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True)


def _inline_shared_initializers(model: Any) -> None:
    """Replace ``Identity`` nodes that alias an initializer by a copy of it under the node's
    output name. The TorchScript exporter shares equal weights (e.g. the zero biases of
    untrained batch norms) through such nodes, which onnxruntime's quantiser cannot quantise."""
    onnx, _ = require_onnx()
    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            arr = onnx.numpy_helper.to_array(inits[node.input[0]])
            model.graph.initializer.append(onnx.numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    alive = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(alive)


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    onnx, _ = require_onnx()
    model = onnx.load(str(path))
    _inline_shared_initializers(model)
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "opticsfree"
    model.producer_version = __version__
    model.doc_string = ("opticsfree classifier: images (batch, C, H, W) -> "
                        + ", ".join(json.loads(meta["opticsfree.outputs"]))
                        + "; see metadata opticsfree.*")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def session(path: str | Path | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU inference session of ``path`` (or of a serialised model)."""
    _, ort = require_onnx()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_session(sess: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The ``posterior`` output of ``sess`` for images (N, C, H, W), in batches."""
    out = [sess.run(["posterior"], {"images": images[i:i + batch_size]})[0]
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def reference_posterior(classifier: Classifier, images: Any, batch_size: int = 256) -> np.ndarray:
    """PyTorch's posteriors (float64) of preprocessed uint8 images: what ``predict`` computes."""
    from opticsfree.bayes.posterior import log_posterior

    scores, _ = classifier.scores(images, batch_size)
    return np.exp(log_posterior(classifier.log_prior, classifier.log_likelihood(scores)))


@dataclass
class Comparison:
    """An ONNX model's posteriors against a reference on the same captures.

    Attributes:
        n: captures compared.
        agreement: fraction whose most probable class is the same.
        max_posterior_diff: largest absolute difference of any probability.
        accuracy: percent of correct classes (None without labels).
    """

    n: int
    agreement: float
    max_posterior_diff: float
    accuracy: float | None

    @staticmethod
    def of(post: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> "Comparison":
        """Compare posteriors (N, C) with reference posteriors (N, C)."""
        pred = post.argmax(1)
        acc = None if labels is None else 100.0 * float((pred == labels).mean())
        return Comparison(n=len(post), agreement=float((pred == ref.argmax(1)).mean()),
                          max_posterior_diff=float(np.abs(post - ref).max()) if len(post) else 0.0,
                          accuracy=acc)


@dataclass
class ExportResult:
    """What ``export`` wrote and how well it reproduces the PyTorch model.

    Attributes:
        path: the fp32 ONNX file.
        format: ``onnx``.
        size_bytes: its size.
        input_dtype: ``uint8`` or ``float``.
        input_shape: ``["batch", C, size, size]``.
        outputs: the output names.
        classes: class names.
        temperature, temperature_source, threshold, prior: what is baked in / stored.
        verify_split: the split the sample came from.
        fp32: the fp32 graph against PyTorch (:class:`Comparison`), plus ``torch_accuracy``.
        torch_accuracy: PyTorch's accuracy on the sample (percent, None without labels).
        int8_method: ``dynamic`` or ``static`` (None without ``int8``).
        int8_path, int8_size_bytes, int8: the quantised copy and its comparison with PyTorch
            (None without ``int8``); ``int8_accuracy_change`` = int8 accuracy - fp32 accuracy
            (percentage points).
        seconds: export time.
    """

    path: str
    format: str
    size_bytes: int
    input_dtype: str
    input_shape: list
    outputs: list[str]
    classes: list[str]
    run: str
    epoch: int
    likelihood: str
    temperature: float
    temperature_source: str | None
    threshold: float | None
    prior: str
    verify_split: str
    fp32: Comparison
    torch_accuracy: float | None
    int8_method: str | None = None
    int8_path: str | None = None
    int8_size_bytes: int | None = None
    int8: Comparison | None = None
    int8_accuracy_change: float | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _downstream(model: Any, start: str) -> list[str]:
    """Names of the nodes that (transitively) consume tensor ``start``."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: dict[str, None] = {}
    todo = deque([start])
    while todo:
        for node in consumers.get(todo.popleft(), []):
            if node.name not in seen:
                seen[node.name] = None
                todo.extend(node.output)
    return list(seen)


class _Calibration:
    """onnxruntime's CalibrationDataReader over uint8 (or float) images, 64 at a time."""

    def __init__(self, images: np.ndarray):
        self._batches = iter([{"images": images[i:i + 64]} for i in range(0, len(images), 64)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(src: Path, dst: Path, classifier: Classifier, method: str = "dynamic",
                  calibration: np.ndarray | None = None) -> None:
    """onnxruntime int8 quantisation of ``src`` to ``dst``; the nodes after the embedding
    (prototype distances and softmax) stay float32.

    Args:
        src: the fp32 model.
        dst: the quantised model to write.
        classifier: the exported classifier.
        method: ``dynamic`` (``quantize_dynamic``: uint8 weights, activations quantised at run
            time; no data needed) or ``static`` (``quantize_static``, QDQ format: int8 weights
            and uint8 activations whose ranges are calibrated on ``calibration``).
        calibration: the model's inputs for ``static`` (the run's train captures).
    """
    onnx, _ = require_onnx()
    from onnxruntime.quantization import (QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    if method not in INT8_METHODS:
        raise ConfigError(f"--int8-method: expected one of {', '.join(INT8_METHODS)}, got {method!r}")
    model = onnx.load(str(src))
    keep = _downstream(model, "embedding") if classifier.likelihood == "metric" else []
    ops = ["Conv", "MatMul", "Gemm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) first
        try:
            if method == "dynamic":
                quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8,
                                 nodes_to_exclude=keep, op_types_to_quantize=ops)
                how = ("onnxruntime quantize_dynamic: uint8 weights, activations quantised at run "
                       "time (Conv, MatMul, Gemm up to the embedding)")
            else:
                if calibration is None or len(calibration) == 0:
                    raise ConfigError("--int8-method static needs calibration captures")
                quantize_static(str(src), str(dst), _Calibration(calibration),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                                op_types_to_quantize=ops)
                how = (f"onnxruntime quantize_static (QDQ): int8 weights, uint8 activations "
                       f"calibrated (min-max) on {len(calibration)} train captures (Conv, MatMul, "
                       "Gemm up to the embedding)")
        finally:
            logging.disable(logging.NOTSET)
    _set_metadata(dst, {**{p.key: p.value for p in model.metadata_props},
                        "opticsfree.quantization": how})


def sample_split(classifier: Classifier, split: str, n: int, seed: int = 0) -> tuple[Any, np.ndarray]:
    """Up to ``n`` captures of the run's ``split`` (seeded sample, in index order): (uint8
    images (n, C, size, size), labels (n,)).

    Raises:
        DataError: the split cannot be loaded (named) or is empty.
    """
    try:
        data = classifier.model.load_split(split)
    except OpticsfreeError as e:
        raise type(e)(f"export verifies the graph on the run's {split} captures: {e}") from None
    total = len(data.labels)
    if total == 0:
        raise DataError(f"{classifier.model.captures}: split {split!r} is empty; nothing to "
                        "verify the export on")
    idx = np.arange(total) if total <= n else np.sort(
        np.random.default_rng(seed).choice(total, size=n, replace=False))
    import torch

    t = torch.as_tensor(idx)
    return data.lensless[t], np.asarray(data.labels[t], dtype=np.int64)


def export_onnx(classifier: Classifier, out: str | Path, *, int8: bool = False,
                int8_method: str = "dynamic", input_dtype: str = "uint8",
                verify_split: str = "test", n_verify: int = DEFAULT_VERIFY, images: Any = None,
                labels: np.ndarray | None = None, calibration: Any = None,
                threads: int | None = None) -> ExportResult:
    """Export ``classifier`` to ONNX at ``out``, verified with onnxruntime before it is kept.

    Args:
        classifier: from :func:`~opticsfree.inference.bundle.load_classifier`.
        out: the ``.onnx`` file to write (atomically; the int8 copy is ``<stem>.int8.onnx``).
        int8: also write an int8 copy and measure it.
        int8_method: ``dynamic`` or ``static`` (see :func:`quantize_int8`).
        input_dtype: ``uint8`` (0..255) or ``float`` (0..1) input.
        verify_split: the run's split sampled for the verification.
        n_verify: captures in the sample.
        images: verify on these preprocessed uint8 (N, C, size, size) images instead of the
            run's split (benchmarks, tests).
        labels: their classes (optional).
        calibration: uint8 images the static quantiser calibrates on (default: a sample of
            the run's train captures; with ``images`` given: ``images``).
        threads: onnxruntime threads (None: its default).

    Returns:
        An :class:`ExportResult`.

    Raises:
        ConfigError: onnx/onnxruntime missing, a bad ``out`` or ``input_dtype``.
        ExportError: the exported graph disagrees with PyTorch beyond the tolerances.
    """
    require_onnx()
    from opticsfree.utils.io import atomic_path, check_out_file

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {out}: expected an .onnx file")
    check_out_file(out, "an .onnx file")
    graph = deployable_graph(classifier, input_dtype)
    t0 = time.perf_counter()
    if images is None:
        images, labels = sample_split(classifier, verify_split, n_verify)
    else:
        verify_split = "given"
    if int8_method not in INT8_METHODS:
        raise ConfigError(f"--int8-method: expected one of {', '.join(INT8_METHODS)}, "
                          f"got {int8_method!r}")

    def as_input(x: Any) -> np.ndarray:
        return x.numpy() if input_dtype == "uint8" else (x.float() / 255.0).numpy()

    feed = as_input(images)
    if int8 and int8_method == "static" and calibration is None:
        calibration = images if verify_split == "given" else \
            sample_split(classifier, "train", N_CALIBRATION)[0]
    ref = reference_posterior(classifier, images)
    outputs = output_names(classifier)
    int8_out = out.with_name(f"{out.stem}.int8.onnx")
    meta = metadata(classifier, input_dtype)
    with atomic_path(out) as tmp:
        _torch_export(graph, images[:2] if input_dtype == "uint8" else images[:2].float() / 255.0,
                      tmp, outputs)
        _set_metadata(tmp, meta)
        fp32 = Comparison.of(run_session(session(tmp, threads), feed), ref, labels)
        if fp32.agreement < MIN_AGREEMENT or fp32.max_posterior_diff > MAX_POSTERIOR_DIFF:
            raise ExportError(
                f"{out}: the ONNX graph does not reproduce PyTorch on {fp32.n} {verify_split} "
                f"captures (classes agree on {100 * fp32.agreement:.2f}%, need "
                f">= {100 * MIN_AGREEMENT:.1f}%; largest posterior difference "
                f"{fp32.max_posterior_diff:.2e}, allowed {MAX_POSTERIOR_DIFF:.0e}); nothing written")
        result = ExportResult(
            path=str(out), format="onnx", size_bytes=tmp.stat().st_size, input_dtype=input_dtype,
            input_shape=json.loads(meta["opticsfree.input"])["shape"], outputs=outputs,
            classes=list(classifier.classes), run=str(classifier.run), epoch=classifier.epoch,
            likelihood=classifier.likelihood, temperature=classifier.temperature,
            temperature_source=classifier.temperature_source, threshold=classifier.threshold,
            prior=classifier.prior_name, verify_split=verify_split, fp32=fp32,
            torch_accuracy=(None if labels is None
                            else 100.0 * float((ref.argmax(1) == labels).mean())))
        if int8:
            with atomic_path(int8_out) as tmp8:
                quantize_int8(tmp, tmp8, classifier, int8_method,
                              as_input(calibration) if int8_method == "static" else None)
                q = Comparison.of(run_session(session(tmp8, threads), feed), ref, labels)
                result.int8_method, result.int8_path, result.int8_size_bytes, result.int8 = (
                    int8_method, str(int8_out), tmp8.stat().st_size, q)
                if q.accuracy is not None and fp32.accuracy is not None:
                    result.int8_accuracy_change = q.accuracy - fp32.accuracy
    result.seconds = time.perf_counter() - t0
    return result


class OnnxScorer:
    """:meth:`Classifier.scores` computed by onnxruntime (``predict --engine onnx``).

    The classifier's graph is exported in memory (fp32, not written anywhere) and run by an
    onnxruntime CPU session; its embedding (metric runs) or logits (ce runs) then go through
    the same NumPy likelihood as PyTorch's. :meth:`check` compares it with PyTorch on a batch.
    """

    def __init__(self, classifier: Classifier, threads: int | None = None):
        import io

        require_onnx()
        self.classifier = classifier
        buf = io.BytesIO()
        _torch_export(deployable_graph(classifier), _example(classifier), buf,
                      output_names(classifier))
        self.session = session(buf.getvalue(), threads)
        self.output = "embedding" if classifier.likelihood == "metric" else "logits"

    def scores(self, images: Any, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`Classifier.scores`, for uint8 images (N, C, size, size)."""
        from opticsfree.bayes.likelihood import ce_scores, metric_scores

        x = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
        out = [self.session.run([self.output], {"images": x[i:i + batch_size]})[0]
               for i in range(0, len(x), batch_size)]
        z = np.concatenate(out)
        if self.output == "logits":
            return ce_scores(z), None
        s = metric_scores(z, self.classifier.prototypes)
        return s, np.sqrt(np.maximum(-s.max(axis=1), 0.0))

    def check(self, images: Any) -> None:
        """Raise :class:`ExportError` when the scores of ``images`` differ from PyTorch's by
        more than 1e-4 or give another class."""
        mine, _ = self.scores(images)
        ref, _ = self.classifier.scores(images)
        diff = float(np.abs(mine - ref).max()) if len(ref) else 0.0
        if diff > 1e-4 or not np.array_equal(mine.argmax(1), ref.argmax(1)):
            raise ExportError(f"{self.classifier.run}: onnxruntime's scores differ from PyTorch's "
                              f"(largest difference {diff:.1e}); use --engine torch")


def _example(classifier: Classifier) -> Any:
    import torch

    pre = classifier.preprocessing
    return torch.zeros(2, pre.channels, pre.size, pre.size, dtype=torch.uint8)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``opticsfree.*`` metadata of an exported model (JSON values decoded), keys without
    the prefix."""
    onnx, _ = require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for p in model.metadata_props:
        if p.key.startswith("opticsfree."):
            key = p.key.removeprefix("opticsfree.")
            try:
                out[key] = json.loads(p.value)
            except ValueError:
                out[key] = p.value
    return out
