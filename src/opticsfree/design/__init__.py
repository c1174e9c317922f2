"""Camera design: how much of the scene a camera keeps (``camera info``), a camera matched to
measured numbers (``camera fit``) and parameter sweeps (``camera sweep``)."""

from opticsfree.design.info import (
    H_METRICS,
    METRICS,
    CameraInfo,
    InfoArtifacts,
    LinearEstimator,
    TransferGeometry,
    camera_info,
    camera_matrix,
    captures_info,
    linear_probe_accuracy,
    transfer_geometry,
)

__all__ = ["H_METRICS", "METRICS", "CameraInfo", "InfoArtifacts", "LinearEstimator", "TransferGeometry",
           "camera_info", "camera_matrix", "captures_info", "linear_probe_accuracy", "transfer_geometry"]
