"""The figures say what they show: labelled sample-grid rows, a legend on the footprint map,
class-spanning samples named by class in ``camera info``'s reconstructions, and units on the
sweep plots' axes and colour bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opticsfree.design.info import METRICS, CameraInfo, InfoArtifacts, SceneData, transfer_geometry
from opticsfree.design.params import Axis
from opticsfree.errors import ConfigError

# --------------------------------------------------------------------------- sample grids


def _rows(n: int = 2, side: int = 4) -> list[torch.Tensor]:
    """Three rows of mid-grey images (the second grey, one channel)."""
    return [torch.full((n, 3, side, side), 128, dtype=torch.uint8),
            torch.full((n, 1, side, side), 128, dtype=torch.uint8),
            torch.full((n, 3, side, side), 128, dtype=torch.uint8)]


def test_sample_grid_names_each_row_in_a_left_margin():
    from opticsfree.reconstruction.base import sample_grid

    n, side, scale, pad = 2, 4, 4, 2
    grid = sample_grid(_rows(n, side), ["capture", "unet", "original"], scale=scale)
    unlabelled_width = n * (side * scale + pad) + pad
    margin = grid.shape[1] - unlabelled_width
    assert grid.dtype == np.uint8 and grid.shape[2] == 3 and margin > 0
    assert grid.shape[0] == 3 * (side * scale + pad) + pad
    for r in range(3):
        y0 = pad + r * (side * scale + pad)
        band = grid[y0:y0 + side * scale, :margin]
        assert band.min() < 64, f"row {r} has no label text"       # black text on white
        # the images keep their place and pixels, right of the margin
        x0 = margin + pad
        assert (grid[y0:y0 + side * scale, x0:x0 + side * scale] == 128).all()
    other = sample_grid(_rows(n, side), ["a", "b", "c"], scale=scale)
    assert other.shape != grid.shape or not np.array_equal(other, grid)


def test_sample_grid_refuses_labels_that_do_not_match_the_rows():
    from opticsfree.reconstruction.base import sample_grid

    with pytest.raises(ValueError, match=r"^labels: expected one label per row \(3\), got 2$"):
        sample_grid(_rows(), ["capture", "original"])
    with pytest.raises(ValueError, match="^labels: "):
        sample_grid(_rows(), ["capture", "", "original"])


def test_save_sample_grid_writes_the_labelled_grid_atomically(tmp_path):
    from PIL import Image

    from opticsfree.reconstruction.base import sample_grid, save_sample_grid

    labels = ["capture", "tikhonov", "original"]
    path = save_sample_grid(tmp_path / "samples" / "epoch_001.png", _rows(), labels)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), sample_grid(_rows(), labels))
    assert [p.name for p in path.parent.iterdir()] == ["epoch_001.png"]  # no temporary file left


@pytest.mark.parametrize("method, options, first", [
    ("tikhonov", {}, "capture"),
    ("unet", {"width": 4, "global_features": 2}, "capture"),
    # the network's input row is the Tikhonov inverse, not the capture
    ("cyclegan", {"width": 4, "n_blocks": 1, "d_width": 4, "pool_size": 3, "front_end": True}, "Tikhonov\ninverse"),
])
def test_reconstruction_training_labels_its_sample_rows(tmp_path, monkeypatch, method, options, first):
    from opticsfree.captures.testing import make_capture_set
    from opticsfree.reconstruction import train as train_module

    calls = []
    real = train_module.save_sample_grid

    def spy(path, rows, labels, *args, **kwargs):
        calls.append(tuple(labels))
        return real(path, rows, labels, *args, **kwargs)

    monkeypatch.setattr(train_module, "save_sample_grid", spy)
    captures = make_capture_set(tmp_path / "set", size=8, channels=1)
    old = torch.get_num_threads()
    try:
        train_module.train_reconstruction(captures, method, tmp_path / "model", epochs=1, options=options,
                                          amp=False, threads=1, samples=3)
    finally:
        torch.set_num_threads(old)
    assert calls == [(first, method, "original")]
    assert (tmp_path / "model" / "samples" / "epoch_001.png").is_file()


# --------------------------------------------------------------------------- footprint map


def _geometry(h: int = 8, w: int = 8, ho: int = 4, wo: int = 4):
    """A transfer matrix of Gaussian footprints on a regular grid, and its geometry."""
    yy, xx = np.mgrid[0:h, 0:w]
    H = []
    for i in range(ho):
        for j in range(wo):
            cy, cx = i * (h - 1) / (ho - 1), j * (w - 1) / (wo - 1)
            H.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0).ravel())
    H = torch.tensor(np.array(H))
    return transfer_geometry(H, (h, w), (ho, wo)), H


def test_footprint_map_has_a_legend_naming_every_element():
    import matplotlib.pyplot as plt

    from opticsfree.design.figures import footprints_figure

    geo, H = _geometry()
    fig = footprints_figure(geo, H)
    try:
        legend = fig.axes[0].get_legend()
        assert legend is not None
        texts = [t.get_text() for t in legend.get_texts()]
        assert len(texts) == 5
        assert "displayed image" in texts[0]
        assert "centroid" in texts[1] and "sensor" in texts[1]
        for name, text in zip(("centre", "edge", "corner"), texts[2:]):
            assert text.startswith(f"{name} pixel") and "half-maximum footprint" in text
    finally:
        plt.close(fig)
    fig = footprints_figure(geo)  # without H: no contours, so no contour entries
    try:
        assert len(fig.axes[0].get_legend().get_texts()) == 2
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- camera info samples


def test_class_samples_take_one_of_each_class_in_class_order_then_fill_up():
    from opticsfree.design.info import class_samples

    labels = np.repeat(np.arange(4), 3)[::-1].copy()     # sorted by class, highest first
    pick = class_samples(labels, 6)
    assert labels[pick].tolist() == [0, 1, 2, 3, 0, 1]
    assert len(set(pick.tolist())) == 6
    assert class_samples(labels, 6).tolist() == pick.tolist()  # deterministic
    assert len(class_samples(labels, 100)) == len(labels)
    with pytest.raises(ValueError, match="^n: "):
        class_samples(labels, 0)


def test_camera_info_samples_span_the_classes_and_are_named_by_class():
    import matplotlib.pyplot as plt

    from opticsfree.design.info import scene_metrics

    classes = [f"class-{c}" for c in range(10)]
    labels = np.repeat(np.arange(10), 5)                # CIFAR-10 test order: class blocks
    n = len(labels)
    # each scene's pixels hold its row number, so the picked rows can be read back
    originals = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    data = SceneData(originals, originals, labels, originals.clone(), originals, labels,
                     [str(i) for i in range(n)])
    data.classes = classes
    info = CameraInfo(source="test", dataset="test", n_train=n, n_val=0, n_test=n, size=4, seed=0, limit=None)
    art = InfoArtifacts()
    scene_metrics(data, info, (), 0, art)
    picked = art.originals[:, 0, 0, 0].long().numpy()
    assert sorted(set(labels[picked].tolist())) == list(range(10))   # every class present
    assert labels[picked].tolist() == list(range(10))                  # in class order
    assert torch.equal(art.captures, data.test_captures[torch.from_numpy(picked)])
    from opticsfree.design.figures import linear_figure

    fig = linear_figure(art)
    try:
        titles = [ax.get_title() for ax in fig.axes[:10]]
        assert titles == classes
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- sweep units


def test_camera_field_units_come_from_the_config():
    from opticsfree.design.params import numeric_paths
    from opticsfree.optics import load_camera_config
    from opticsfree.optics.config import field_unit

    assert field_unit("geometry.gap_mm") == "mm"
    assert field_unit("geometry.offset_mm.0") == "mm"
    assert field_unit("sensor.pixel_um") == "\u00b5m"
    assert field_unit("pixel.acceptance_deg") == "\u00b0"
    assert field_unit("sensor.signal_rate_e_per_s") == "e\u207b/s"
    assert field_unit("sensor.read_noise_e") == "e\u207b"
    assert field_unit("sensor.max_exposure_s") == "s"
    assert field_unit("sensor.adc_bits") == "bit"          # from the Field, not the name
    assert field_unit("display.gamma") == ""                # dimensionless
    assert field_unit("psf.pixel_mm") == "mm"               # an optional section
    for path in numeric_paths(load_camera_config("seed")):
        assert isinstance(field_unit(path), str)
    with pytest.raises(ConfigError, match="^path: unknown camera field 'geometry.nope'$"):
        field_unit("geometry.nope")
    with pytest.raises(ConfigError, match="^path: "):
        field_unit("sensor")


def test_every_camera_info_metric_has_a_unit():
    from opticsfree.design.info import METRIC_UNITS

    assert set(METRIC_UNITS) == set(METRICS)
    assert METRIC_UNITS["linear_psnr"] == "dB" and METRIC_UNITS["linear_probe_accuracy"] == "%"


def test_sweep_heatmap_axes_and_colour_bar_carry_units():
    import matplotlib.pyplot as plt

    from opticsfree.design.figures import sweep_figure

    axes = [Axis("geometry.gap_mm", 0.5, 2.0, 3), Axis("sensor.pixel_um", 1.0, 3.0, 2)]
    rows = [{"geometry.gap_mm": a, "sensor.pixel_um": b, "linear_psnr": 10 + a + b}
            for a in axes[0].values() for b in axes[1].values()]
    fig = sweep_figure(rows, axes, "linear_psnr")
    try:
        plot, bar = fig.axes
        assert plot.get_ylabel() == "geometry.gap_mm (mm)"
        assert plot.get_xlabel() == "sensor.pixel_um (\u00b5m)"
        assert bar.get_ylabel() == "linear_psnr (dB)"
    finally:
        plt.close(fig)
    line = [{"display.gamma": g, "linear_probe_accuracy": 50.0} for g in (1.0, 2.0)]
    fig = sweep_figure(line, [Axis("display.gamma", 1.0, 2.0, 2)], "linear_probe_accuracy")
    try:
        (plot,) = fig.axes
        assert plot.get_xlabel() == "display.gamma (dimensionless)"
        assert plot.get_ylabel() == "linear_probe_accuracy (%)"
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="^metric: "):
        sweep_figure(line, [Axis("display.gamma", 1.0, 2.0, 2)], "psnr")
