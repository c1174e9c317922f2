r"""Camera backends: record what the display shows.

Every backend delivers frames as (H, W, 3) uint8 RGB; :meth:`CameraBackend.capture` then
applies the rig file's ``crop`` (x, y, width, height) and ``output_size`` (area resampling),
the same for every backend.

- ``opencv``: :class:`cv2.VideoCapture` on a device index (UVC/USB modules such as the seed's
  Arducam, V4L2) or on a video file or image sequence (``source``), which is how it is tested.
- ``picamera2``: Raspberry Pi camera modules (optional extra ``opticsfree[pi]``).
- ``virtual``: a camera file or preset (:mod:`opticsfree.optics`) applied to what the display
  actually shows. The drawn area of the screen is averaged in linear light over a grid of
  display elements, the shown scene's own resolution (with ``nearest`` drawing at an integer
  scale this gives the scene back exactly):

  .. math:: v_{ij} = \Bigl(\tfrac{1}{|c_{ij}|} \sum_{p \in c_{ij}} v_p^{\gamma_d}\Bigr)^{1/\gamma_d}

  and the camera model, with the display's width and height set to the rig's ``size_mm``,
  captures it. Its noise is seeded per capture (:class:`FrameTag`), so a capture does not
  depend on what was captured before it (a resumed run equals an uninterrupted one). Optional
  drift (``drift_gain_per_scene``, ``drift_shift_mm_per_scene``) models a rig whose backlight
  or alignment changes slowly: at scene position :math:`n` the display is
  :math:`1 + n\,g` times as bright and shifted by :math:`n\,\delta`.

Locking: ``exposure``, ``gain`` and ``white_balance`` are set when they are not ``"auto"``;
:meth:`CameraBackend.open` returns what was asked, what the device reports back and which
settings it would not lock (``settings["not_locked"]``, with the reason).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.rig.config import CameraSection, RigConfig
from opticsfree.rig.display import Display
from opticsfree.utils.seeding import derive_seed

#: How to install the optional Raspberry Pi camera backend.
PI_HINT = ("the picamera2 camera needs picamera2: pip install 'opticsfree[pi]' (on Raspberry Pi OS: "
           "sudo apt install python3-picamera2)")


class CameraError(OpticsfreeError):
    """The camera cannot be opened or stopped answering (one line)."""


@dataclass(frozen=True)
class FrameTag:
    """Which capture a frame is: the run's seed, the stream (a split, or ``monitor``), the
    scene's position in the run and the frame number. Real cameras ignore it; the virtual
    camera seeds its noise and sets its drift from it."""

    seed: int
    stream: str
    position: int
    frame: int = 0


def crop_and_resize(frame: np.ndarray, crop: tuple[int, int, int, int] | None,
                    output_size: tuple[int, int] | None) -> np.ndarray:
    """Apply a region of interest (x, y, width, height) and resample to ``output_size``
    (rows, cols) by area averaging (PIL ``BOX``).

    Raises:
        CameraError: the crop does not fit in the frame.
    """
    if crop is not None:
        x, y, w, h = crop
        if y + h > frame.shape[0] or x + w > frame.shape[1]:
            raise CameraError(f"camera.crop {list(crop)} does not fit in the {frame.shape[1]}x{frame.shape[0]} "
                              "frames the camera delivers")
        frame = frame[y:y + h, x:x + w]
    if output_size is not None and tuple(frame.shape[:2]) != tuple(output_size):
        rows, cols = output_size
        frame = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(frame[..., c])).resize(
            (cols, rows), Image.BOX)) for c in range(frame.shape[2])], axis=-1)
    return np.ascontiguousarray(frame)


class CameraBackend(ABC):
    """A camera of the rig (a context manager: ``with camera: ...``).

    Args:
        cfg: the camera section of the rig file.
        rig: the whole rig (paths relative to the rig file, the display geometry).
        display: the rig's display (the virtual camera records it).
    """

    name = "camera"

    def __init__(self, cfg: CameraSection, rig: RigConfig, display: Display):
        self.cfg = cfg
        self.rig = rig
        self.display = display
        self.settings: dict[str, Any] = {}

    def __enter__(self) -> "CameraBackend":
        self.settings = self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abstractmethod
    def open(self) -> dict[str, Any]:
        """Open the device and lock what the rig file asks; return the settings record
        (``requested``, ``applied``, ``not_locked``)."""

    @abstractmethod
    def read(self, tag: FrameTag) -> np.ndarray:
        """One frame as the device delivers it, (H, W, 3) uint8 RGB (the virtual camera: one
        channel for a grey scene, as ``simulate`` captures it)."""

    def prepare(self, shape: tuple[int, int], channels: int) -> None:
        """Set-up before the first timed frame for scenes of ``shape`` (H, W) (the virtual camera
        builds its transfer matrix here; hardware needs nothing)."""

    def discard(self, n: int, tag: FrameTag) -> None:
        """Drop ``n`` frames (stale frames still in the device's buffer after a change)."""
        for _ in range(n):
            self.read(tag)

    def capture(self, tag: FrameTag) -> np.ndarray:
        """One stored capture: :meth:`read`, then crop and resize as the rig file says."""
        return crop_and_resize(self.read(tag), self.cfg.crop, self.cfg.output_size)

    def linear(self, tag: FrameTag, output_gamma: float = 2.2) -> np.ndarray:
        """One capture in linear units (float64 in [0, 1]): the device's raw output where it
        has one, else the 8-bit capture decoded by ``output_gamma``."""
        return (self.capture(tag).astype(np.float64) / 255.0) ** output_gamma

    def lock_exposure(self, peak: float | None = None) -> dict[str, Any]:
        """Lock the exposure for what the display shows now: at the auto-exposure's choice, or
        (``peak``) scaled so that the brightest pixel of the current frame sits at ``peak`` of
        full scale (calibration: the most signal without clipping). Returns what was locked."""
        return {"exposure": "not supported by this backend"}

    def close(self) -> None:
        """Release the device."""


class OpenCVCamera(CameraBackend):
    """``cv2.VideoCapture`` on a device index or a video file / image sequence.

    Exposure is given in seconds in the rig file; for V4L2 devices it is set in the driver's
    unit (100 us) with manual auto-exposure mode, for other OpenCV backends as log2(seconds)
    (DirectShow/MSMF convention). Gain and white balance (Kelvin) are passed as they are. A
    device or file that refuses a property is reported in ``not_locked``.
    """

    name = "opencv"

    def open(self) -> dict[str, Any]:
        import cv2

        self._cv2 = cv2
        src: Any = self.cfg.device if self.cfg.device is not None else str(self.rig.resolve(self.cfg.source))
        self._src = src
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise CameraError(f"opencv cannot open camera.{'device' if isinstance(src, int) else 'source'} {src!r}")
        self._cap = cap
        requested: dict[str, Any] = {}
        not_locked: dict[str, str] = {}
        if self.cfg.resolution is not None:
            requested["resolution"] = list(self.cfg.resolution)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.resolution[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.resolution[1])
        v4l2 = cap.getBackendName() == "V4L2"
        if self.cfg.exposure != "auto":
            requested["exposure_s"] = self.cfg.exposure
            ok = cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1 if v4l2 else 0.25)
            value = self.cfg.exposure * 1e4 if v4l2 else math.log2(self.cfg.exposure)
            if not (ok and cap.set(cv2.CAP_PROP_EXPOSURE, value)):
                not_locked["exposure"] = "the device refused CAP_PROP_AUTO_EXPOSURE/CAP_PROP_EXPOSURE"
        if self.cfg.gain != "auto":
            requested["gain"] = self.cfg.gain
            if not cap.set(cv2.CAP_PROP_GAIN, self.cfg.gain):
                not_locked["gain"] = "the device refused CAP_PROP_GAIN"
        if self.cfg.white_balance != "auto":
            requested["white_balance_k"] = self.cfg.white_balance
            ok = cap.set(cv2.CAP_PROP_AUTO_WB, 0)
            if not (ok and cap.set(cv2.CAP_PROP_WB_TEMPERATURE, self.cfg.white_balance)):
                not_locked["white_balance"] = "the device refused CAP_PROP_AUTO_WB/CAP_PROP_WB_TEMPERATURE"
        applied = {"backend_api": cap.getBackendName(),
                   "frame_width": cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                   "frame_height": cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
                   "fps": cap.get(cv2.CAP_PROP_FPS), "exposure": cap.get(cv2.CAP_PROP_EXPOSURE),
                   "auto_exposure": cap.get(cv2.CAP_PROP_AUTO_EXPOSURE), "gain": cap.get(cv2.CAP_PROP_GAIN),
                   "white_balance_k": cap.get(cv2.CAP_PROP_WB_TEMPERATURE)}
        return {"backend": self.name, "source": src, "requested": requested,
                "applied": {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                            for k, v in applied.items()},
                "not_locked": not_locked}

    def read(self, tag: FrameTag) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraError(f"opencv: no frame from {self._src!r} (device gone, or the end of the file)")
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=2)
        return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def discard(self, n: int, tag: FrameTag) -> None:
        for _ in range(n):
            if not self._cap.grab():
                raise CameraError(f"opencv: no frame from {self._src!r} (device gone, or the end of the file)")

    def lock_exposure(self, peak: float | None = None) -> dict[str, Any]:
        cv2 = self._cv2
        value = self._cap.get(cv2.CAP_PROP_EXPOSURE)
        v4l2 = self._cap.getBackendName() == "V4L2"
        if peak is not None and v4l2 and value > 0:  # V4L2 exposure is linear in time
            top = float(self.capture(FrameTag(0, "lock", 0)).max()) / 255.0
            if 0 < top < 1:
                value = value * (peak / top ** 2.2 if top else 1.0)
        ok = self._cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1 if v4l2 else 0.25) and self._cap.set(cv2.CAP_PROP_EXPOSURE, value)
        return {"exposure": value if ok else "the device refused a manual exposure"}

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None


class Picamera2Camera(CameraBackend):
    """A Raspberry Pi camera module through picamera2 (libcamera): RGB frames of ``resolution``;
    exposure (us), analogue gain and colour temperature set through its controls."""

    name = "picamera2"

    def open(self) -> dict[str, Any]:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ConfigError(PI_HINT) from None
        cam = Picamera2()
        main: dict[str, Any] = {"format": "RGB888"}
        if self.cfg.resolution is not None:
            main["size"] = tuple(self.cfg.resolution)
        cam.configure(cam.create_video_configuration(main=main))
        controls: dict[str, Any] = {}
        if self.cfg.exposure != "auto":
            controls.update(AeEnable=False, ExposureTime=int(round(self.cfg.exposure * 1e6)))
        if self.cfg.gain != "auto":
            controls.update(AeEnable=False, AnalogueGain=float(self.cfg.gain))
        if self.cfg.white_balance != "auto":
            controls.update(AwbEnable=False, ColourTemperature=int(self.cfg.white_balance))
        not_locked: dict[str, str] = {}
        known = getattr(cam, "camera_controls", {}) or {}
        for k in list(controls):
            if known and k not in known:
                not_locked[k] = "not a control of this camera"
                controls.pop(k)
        if controls:
            cam.set_controls(controls)
        cam.start()
        self._cam = cam
        meta = cam.capture_metadata() if hasattr(cam, "capture_metadata") else {}
        return {"backend": self.name, "requested": controls, "not_locked": not_locked,
                "applied": {k: meta.get(k) for k in ("ExposureTime", "AnalogueGain", "ColourTemperature",
                                                     "ColourGains") if k in meta}}

    def read(self, tag: FrameTag) -> np.ndarray:
        try:
            frame = self._cam.capture_array("main")
        except Exception as e:  # noqa: BLE001 - any libcamera failure ends the run with its reason
            raise CameraError(f"picamera2: no frame ({type(e).__name__}: {e})".splitlines()[0]) from None
        return np.ascontiguousarray(frame[..., 2::-1])  # RGB888 is B, G, R in memory

    def lock_exposure(self, peak: float | None = None) -> dict[str, Any]:
        meta = self._cam.capture_metadata()
        exposure = int(meta["ExposureTime"])
        if peak is not None:
            top = float(self.capture(FrameTag(0, "lock", 0)).max()) / 255.0
            if 0 < top < 1:
                exposure = int(round(exposure * peak / top ** 2.2))
        controls = {"AeEnable": False, "ExposureTime": exposure, "AnalogueGain": meta["AnalogueGain"]}
        self._cam.set_controls(controls)
        return {"exposure": controls}

    def close(self) -> None:
        if getattr(self, "_cam", None) is not None:
            self._cam.stop()
            self._cam.close()
            self._cam = None


class VirtualCamera(CameraBackend):
    """A simulated camera recording what the rig's display shows (see the module doc)."""

    name = "virtual"

    def open(self) -> dict[str, Any]:
        from opticsfree.optics import load_camera_config

        model = self.cfg.model or ""
        path = self.rig.resolve(model)
        cam = load_camera_config(path if path.suffix and path.exists() else model)
        w_mm, h_mm = self.rig.display.size_mm
        self.model = cam.replace(display={"width_mm": float(w_mm), "height_mm": float(h_mm)})
        self._cameras: dict[tuple, Any] = {}
        self.exposure_s = None if self.cfg.exposure == "auto" else float(self.cfg.exposure)
        not_locked = {k: "the virtual camera has no such control"
                      for k in ("gain", "white_balance") if getattr(self.cfg, k) != "auto"}
        return {"backend": self.name, "model": self.model.to_dict(), "noise": self.cfg.noise,
                "requested": {"exposure_s": self.exposure_s}, "applied": {"exposure_s": self.exposure_s},
                "not_locked": not_locked}

    def camera(self, shape: tuple[int, int], channels: int) -> Any:
        """The :class:`~opticsfree.optics.Camera` for scenes of ``shape`` (cached)."""
        from opticsfree.optics import Camera

        key = (tuple(shape), channels)
        if key not in self._cameras:
            self._cameras[key] = Camera(self.model, shape, channels)
        return self._cameras[key]

    def prepare(self, shape: tuple[int, int], channels: int) -> None:
        self.camera(shape, channels).transfer_matrix()

    def scene_values(self) -> Any:
        """The drawn area averaged in linear light onto the shown scene's grid: (1, C, H, W),
        uint8 where every grid cell is uniform, else float in [0, 1] (C = 1 for a grey scene)."""
        import torch

        drawn = self.display.drawn()
        gh, gw = self.display.shown_shape or drawn.shape[:2]
        c = self.display.shown_channels
        h, w = drawn.shape[:2]
        if h % gh == 0 and w % gw == 0:
            # every grid cell uniform (nearest drawing at an integer scale): the scene itself, exactly
            sub = drawn[::h // gh, ::w // gw]
            if np.array_equal(np.repeat(np.repeat(sub, h // gh, axis=0), w // gw, axis=1), drawn):
                return torch.from_numpy(np.ascontiguousarray(sub[..., :c])).permute(2, 0, 1)[None]
        gamma = float(self.model.display.gamma)
        lin = torch.from_numpy(drawn.astype(np.float64) / 255.0).pow(gamma).permute(2, 0, 1)[None]
        lin = torch.nn.functional.adaptive_avg_pool2d(lin, (gh, gw))[:, :c]
        return lin.pow(1.0 / gamma).float()

    def _capture(self, tag: FrameTag, raw: bool) -> Any:
        import torch

        x = self.scene_values()
        cam = self.camera(tuple(x.shape[-2:]), x.shape[1])
        g = torch.Generator().manual_seed(derive_seed(tag.seed, tag.stream, tag.position, tag.frame))
        n = tag.position
        dx, dy = self.cfg.drift_shift_mm_per_scene
        return cam.capture(x, g, noise=self.cfg.noise, nuisances=self.cfg.nuisances, exposure_s=self.exposure_s,
                           offset_mm=(n * dx, n * dy) if (dx or dy) else None,
                           gain=1.0 + n * self.cfg.drift_gain_per_scene, raw=raw)[0]

    def read(self, tag: FrameTag) -> np.ndarray:
        return self._capture(tag, raw=False).permute(1, 2, 0).numpy()

    def discard(self, n: int, tag: FrameTag) -> None:
        """Nothing to flush: a simulated frame never shows an earlier scene."""

    def linear(self, tag: FrameTag, output_gamma: float = 2.2) -> np.ndarray:
        """The linear ADC output (raw, 10-bit), cropped and resized like :meth:`capture`."""
        y = self._capture(tag, raw=True).permute(1, 2, 0).double().numpy()
        if self.cfg.crop is not None:
            x0, y0, w, h = self.cfg.crop
            y = y[y0:y0 + h, x0:x0 + w]
        if self.cfg.output_size is not None and tuple(y.shape[:2]) != tuple(self.cfg.output_size):
            import torch

            t = torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)))[None]
            y = torch.nn.functional.adaptive_avg_pool2d(t, tuple(self.cfg.output_size))[0].permute(1, 2, 0).numpy()
        return y

    def lock_exposure(self, peak: float | None = None) -> dict[str, Any]:
        x = self.scene_values()
        cam = self.camera(tuple(x.shape[-2:]), x.shape[1])
        irr = cam.irradiance(x)
        t = float(cam.exposure(irr)[0])
        if peak is not None:
            s = self.model.sensor
            top = float((irr * cam.fpn.gain).max()) * s.signal_rate_e_per_s / s.full_well_e
            t = peak / top if top > 0 else t
        self.exposure_s = t
        self.settings.setdefault("applied", {})["exposure_s"] = self.exposure_s
        return {"exposure_s": self.exposure_s, "peak": peak}


#: The camera backends by rig-file name (``camera.backend``).
CAMERAS: dict[str, type[CameraBackend]] = {"opencv": OpenCVCamera, "picamera2": Picamera2Camera,
                                           "virtual": VirtualCamera}


def open_camera(rig: RigConfig, display: Display) -> CameraBackend:
    """The backend ``rig.camera.backend`` (not opened yet: use it as a context manager)."""
    return CAMERAS[rig.camera.backend](rig.camera, rig, display)
