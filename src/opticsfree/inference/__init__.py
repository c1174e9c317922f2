"""Use a trained run on new captures and take it off the workstation: ``predict`` and
``export``.

Public API::

    load_classifier(run, checkpoint="last", prior="uniform") -> Classifier
    predict(classifier, inputs, frames_per_scene=None, reject=False, top=None) -> PredictResult
    write_predictions(result, out)                      # .csv or .jsonl, atomically
    export_onnx(classifier, out, int8=False) -> ExportResult

Importing the package loads NumPy, not torch (the model loads with :func:`load_classifier`).
"""

from opticsfree.inference.bundle import Classifier, Preprocessing, load_classifier
from opticsfree.inference.export import ExportResult, export_onnx
from opticsfree.inference.predict import PredictResult, predict, write_predictions

__all__ = ["Classifier", "ExportResult", "PredictResult", "Preprocessing", "export_onnx",
           "load_classifier", "predict", "write_predictions"]
