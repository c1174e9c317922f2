"""``rig preview``: align the hardware by watching what the camera makes of a known target.

Each frame shows the target on the rig's display, grabs a capture and measures it:
``mean`` and ``std`` (fraction of full scale), ``clipped_fraction`` (pixels at 255),
``black_fraction`` (pixels at 0), a 16-bin ``histogram`` (fractions), and ``correlation``: the
Pearson correlation over all pixels and channels between the capture and the simulator's
prediction of it (the camera file given, with its display set to the rig's drawn size, noise
off). A correlation near 1 says the display, gap and orientation are what the model assumes;
a correlation that rises when the model's ``sensor.readout`` is changed says the picture is
flipped. The default target (:func:`alignment_target`) is asymmetric, so flips show.

With a window (:class:`PanelWindow`, pygame/SDL) the same numbers are drawn beside the
displayed image, the capture and its histogram; headless (``--frames N --json``) they are
printed. ``live`` draws its classes on the same panel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from opticsfree.rig.camera import CameraBackend, FrameTag, open_camera
from opticsfree.rig.capture import grab
from opticsfree.rig.config import RigConfig
from opticsfree.rig.display import open_display

#: Bins of the preview histogram.
HIST_BINS = 16


def alignment_target(size: int = 32) -> np.ndarray:
    """An asymmetric RGB target (H, W, 3) uint8: red, green and blue quadrants and a white one,
    a black cross, and a white marker in the top-left corner (flips and rotations change it)."""
    h = size // 2
    img = np.zeros((size, size, 3), np.uint8)
    img[:h, :h, 0] = 255
    img[:h, h:, 1] = 255
    img[h:, :h, 2] = 255
    img[h:, h:] = 255
    t = max(1, size // 16)
    img[h - t:h + t] = 0
    img[:, h - t:h + t] = 0
    m = max(2, size // 8)
    img[:m, :m] = 255
    return img


def frame_stats(capture: np.ndarray, prediction: np.ndarray | None = None) -> dict[str, Any]:
    """The preview's numbers for one capture (H, W, C) uint8 (see the module doc)."""
    x = capture.astype(np.float64) / 255.0
    hist = np.histogram(capture, bins=HIST_BINS, range=(0, 256))[0] / capture.size
    out: dict[str, Any] = {"mean": float(x.mean()), "std": float(x.std()),
                           "clipped_fraction": float((capture >= 255).mean()),
                           "black_fraction": float((capture == 0).mean()),
                           "histogram": [round(float(v), 6) for v in hist], "correlation": None}
    if prediction is not None:
        p = prediction.astype(np.float64).reshape(-1)
        c = capture.astype(np.float64)
        if c.shape != prediction.shape:
            c = np.asarray(Image.fromarray(capture if capture.shape[2] == 3 else capture[..., 0]).resize(
                (prediction.shape[1], prediction.shape[0]), Image.BOX), dtype=np.float64)
            c = c.reshape(prediction.shape) if c.ndim == 3 else c[..., None]
        c = c.reshape(-1)
        if c.std() > 0 and p.std() > 0:
            out["correlation"] = float(np.corrcoef(c, p)[0, 1])
    return out


def predict_capture(camera_model: Any, rig: RigConfig, image: np.ndarray) -> np.ndarray:
    """The simulator's noise-free capture (H, W, C) uint8 of ``image`` shown on ``rig``."""
    import torch

    from opticsfree.optics import Camera

    w_mm, h_mm = rig.display.size_mm
    model = camera_model.replace(display={"width_mm": float(w_mm), "height_mm": float(h_mm)})
    cam = Camera(model, image.shape[:2], image.shape[2])
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return cam.capture(x, None, noise=False)[0].permute(1, 2, 0).numpy()


def _fit(img: np.ndarray, box: int) -> Image.Image:
    arr = img[..., 0] if img.shape[2] == 1 else img
    pil = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    scale = max(1, box // max(pil.size))
    return pil.resize((pil.size[0] * scale, pil.size[1] * scale), Image.NEAREST)


def render_panel(shown: np.ndarray, capture: np.ndarray, lines: Sequence[str], box: int = 192) -> np.ndarray:
    """The preview panel (H, W, 3) uint8: the displayed image, the capture, the capture's
    histogram (clipped pixels in red) and text ``lines`` below."""
    pad = 8
    width = 3 * box + 4 * pad
    height = box + 2 * pad + 16 * max(1, len(lines)) + pad
    panel = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(panel)
    for k, img in enumerate((shown, capture)):
        tile = _fit(img, box)
        panel.paste(tile, (pad + k * (box + pad), pad))
    hist = np.histogram(capture, bins=64, range=(0, 256))[0].astype(np.float64)
    hist = hist / max(hist.max(), 1.0)
    x0, y0, bw = pad + 2 * (box + pad), pad + box, box / 64
    for i, v in enumerate(hist):
        colour = (220, 60, 60) if i == 63 else (200, 200, 200)
        draw.rectangle([x0 + i * bw, y0 - v * box, x0 + (i + 1) * bw - 1, y0], fill=colour)
    for k, line in enumerate(lines):
        draw.text((pad, box + 2 * pad + 16 * k), line, fill=(235, 235, 235))
    return np.asarray(panel)


class PanelWindow:
    """A window (its own SDL window, beside a pygame display) that shows panels; closing it or
    pressing Escape raises ``KeyboardInterrupt``."""

    def __init__(self, title: str = "opticsfree preview"):
        import os

        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame
        from pygame._sdl2 import video

        pygame.display.init()
        self._pg, self._video = pygame, video
        self._title = title
        self._window = None

    def show(self, panel: np.ndarray) -> None:
        pg, video = self._pg, self._video
        h, w = panel.shape[:2]
        if self._window is None:
            self._window = video.Window(self._title, size=(w, h))
            self._renderer = video.Renderer(self._window)
        surf = pg.surfarray.make_surface(np.ascontiguousarray(panel.transpose(1, 0, 2)))
        tex = video.Texture.from_surface(self._renderer, surf)
        self._renderer.clear()
        tex.draw()
        self._renderer.present()
        for ev in pg.event.get():
            if ev.type == pg.QUIT or (ev.type == pg.KEYDOWN and ev.key == pg.K_ESCAPE) \
                    or getattr(ev, "type", None) == getattr(pg, "WINDOWCLOSE", -1):
                raise KeyboardInterrupt

    def close(self) -> None:
        if self._window is not None:
            self._window.destroy()
            self._window = None


@dataclass
class PreviewResult:
    """Per-frame numbers of a preview and their summary."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    camera_settings: dict[str, Any] = field(default_factory=dict)
    model: str | None = None

    def summary(self) -> dict[str, Any]:
        def mean(key: str) -> float | None:
            vals = [f[key] for f in self.frames if f.get(key) is not None]
            return float(np.mean(vals)) if vals else None

        return {"frames": len(self.frames), "model": self.model, "mean": mean("mean"),
                "clipped_fraction": mean("clipped_fraction"), "black_fraction": mean("black_fraction"),
                "correlation": mean("correlation"), "frames_per_s": mean("frames_per_s")}

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "frames": self.frames, "camera_settings": self.camera_settings}


def preview(rig: RigConfig, frames: int | None = None, image: np.ndarray | None = None,
            camera_model: Any = None, window: bool = False,
            on_frame: Callable[[dict[str, Any]], None] | None = None) -> PreviewResult:
    """Show ``image`` (default :func:`alignment_target`) and measure ``frames`` captures
    (None: until Ctrl-C or the window is closed).

    Args:
        rig: the rig.
        frames: captures to take (None: run until interrupted).
        image: (H, W, C) uint8 target.
        camera_model: a :class:`~opticsfree.optics.CameraConfig` to predict the capture with
            (default: the virtual camera's own model; None for hardware gives no correlation).
        window: draw the panel in a window.
        on_frame: called with each frame's numbers.
    """
    image = alignment_target() if image is None else image
    result = PreviewResult()
    win = PanelWindow() if window else None
    display = open_display(rig.display)
    try:
        with display:
            camera: CameraBackend = open_camera(rig, display)
            with camera:
                camera.prepare(image.shape[:2], image.shape[2])
                result.camera_settings = camera.settings
                model = camera_model if camera_model is not None else getattr(camera, "model", None)
                result.model = None if model is None else model.name
                prediction = predict_capture(model, rig, image) if model is not None else None
                display.show(image)
                time.sleep(rig.display.settle_s)
                grab(camera, lambda: camera.discard(rig.camera.discard, FrameTag(0, "preview", 0)),
                     rig.camera.timeout_s, "the first preview frame")
                k = 0
                t_last = time.perf_counter()
                while frames is None or k < frames:
                    cap = grab(camera, lambda k=k: camera.capture(FrameTag(0, "preview", k)), rig.camera.timeout_s,
                               f"preview frame {k}")
                    now = time.perf_counter()
                    stats = {"frame": k, **frame_stats(cap, prediction),
                             "frames_per_s": round(1.0 / max(now - t_last, 1e-9), 2)}
                    t_last = now
                    result.frames.append(stats)
                    if on_frame:
                        on_frame(stats)
                    if win is not None:
                        corr = "-" if stats["correlation"] is None else f"{stats['correlation']:.3f}"
                        win.show(render_panel(display.drawn(), cap, [
                            f"frame {k}   {stats['frames_per_s']:.1f} frames/s",
                            f"mean {stats['mean']:.3f}  std {stats['std']:.3f}  clipped "
                            f"{100 * stats['clipped_fraction']:.2f}%  black {100 * stats['black_fraction']:.2f}%",
                            f"correlation with the {result.model or 'no'} model: {corr}"]))
                    k += 1
    finally:
        if win is not None:
            win.close()
    return result
