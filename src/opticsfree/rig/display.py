"""Display backends: show a scene on a screen, and say what the screen shows.

Every backend draws the same pixels: :func:`render` resamples the scene to the drawn size
(``display.size_px``, nearest or bilinear) and places it at ``display.origin`` on a screen of
grey level ``display.background``. A grayscale scene is shown as grey (R = G = B).

- ``virtual``: the screen is an array in memory (no window; the rig's physics come from the
  virtual camera).
- ``pygame``: a real window (``mode = "window"``) or the whole screen (``"fullscreen"``,
  the rig's LCD) through SDL; under SDL's ``dummy`` video driver it runs without a screen.

:meth:`Display.screen` returns what the screen shows (the pygame surface read back, or the
virtual frame buffer): the virtual camera records exactly that.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from PIL import Image

from opticsfree.errors import ConfigError, OpticsfreeError
from opticsfree.rig.config import DisplaySection


class DisplayError(OpticsfreeError):
    """The display cannot be opened or was closed (one line)."""


def render(image: np.ndarray, cfg: DisplaySection) -> np.ndarray:
    """The full screen showing ``image``: (Hs, Ws, 3) uint8.

    Args:
        image: (H, W, C) uint8 scene, C = 1 or 3.
        cfg: the display section of the rig file.

    Returns:
        The screen: background everywhere, the scene resampled to ``size_px`` at ``origin``.
    """
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"a scene is (H, W, 1|3) uint8, got {image.shape} {image.dtype}")
    ws, hs = cfg.screen_px
    screen = np.full((hs, ws, 3), cfg.background, dtype=np.uint8)
    w, h = cfg.size_px
    x, y = cfg.origin
    src = image[..., 0] if image.shape[2] == 1 else image
    resample = Image.NEAREST if cfg.interpolation == "nearest" else Image.BILINEAR
    drawn = np.asarray(Image.fromarray(np.ascontiguousarray(src)).resize((w, h), resample))
    screen[y:y + h, x:x + w] = drawn[..., None] if drawn.ndim == 2 else drawn
    return screen


class Display(ABC):
    """A screen that shows one scene at a time (a context manager: ``with display: ...``).

    Attributes:
        cfg: the display section of the rig file.
        shown_shape: (H, W) of the scene shown last (None before the first).
        shown_channels: its channels (1 or 3).
    """

    name = "display"

    def __init__(self, cfg: DisplaySection):
        self.cfg = cfg
        self.shown_shape: tuple[int, int] | None = None
        self.shown_channels = 3

    def __enter__(self) -> "Display":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def show(self, image: np.ndarray) -> None:
        """Draw ``image`` ((H, W, C) uint8) as the rig file says and present it."""
        self.present(render(image, self.cfg))
        self.shown_shape = (int(image.shape[0]), int(image.shape[1]))
        self.shown_channels = int(image.shape[2])

    def drawn(self) -> np.ndarray:
        """The drawn area of :meth:`screen` (size_px), (h, w, 3) uint8."""
        x, y = self.cfg.origin
        w, h = self.cfg.size_px
        return self.screen()[y:y + h, x:x + w]

    @abstractmethod
    def open(self) -> None:
        """Open the screen (a window, or the frame buffer)."""

    @abstractmethod
    def present(self, screen: np.ndarray) -> None:
        """Put a full rendered screen (Hs, Ws, 3) on the display."""

    @abstractmethod
    def screen(self) -> np.ndarray:
        """What the screen shows now, (Hs, Ws, 3) uint8."""

    def close(self) -> None:
        """Close the window (nothing for the virtual display)."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records of this display."""
        return {"backend": self.name}


class VirtualDisplay(Display):
    """A frame buffer in memory: what is presented is what :meth:`screen` returns."""

    name = "virtual"

    def open(self) -> None:
        ws, hs = self.cfg.screen_px
        self._buffer = np.full((hs, ws, 3), self.cfg.background, dtype=np.uint8)

    def present(self, screen: np.ndarray) -> None:
        self._buffer = screen

    def screen(self) -> np.ndarray:
        return self._buffer


class PygameDisplay(Display):
    """A pygame (SDL) window, or the whole screen in ``fullscreen`` mode.

    The rendered screen is blitted to the window surface and flipped; :meth:`screen` reads the
    surface back. Window events are handled at every change: closing the window or pressing
    Escape stops the run like Ctrl-C (``KeyboardInterrupt``).
    """

    name = "pygame"

    def open(self) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError:
            raise ConfigError("the pygame display needs pygame: pip install pygame") from None
        self._pg = pygame
        try:
            pygame.display.init()
            flags = pygame.FULLSCREEN if self.cfg.mode == "fullscreen" else 0
            n = pygame.display.get_num_displays()
            if self.cfg.screen >= n:
                raise DisplayError(f"display.screen = {self.cfg.screen}, but SDL sees {n} screen(s)")
            self._surface = pygame.display.set_mode(tuple(self.cfg.screen_px), flags, display=self.cfg.screen)
            pygame.display.set_caption("opticsfree rig")
            pygame.mouse.set_visible(False)
        except pygame.error as e:
            raise DisplayError(f"pygame cannot open the display ({os.environ.get('SDL_VIDEODRIVER') or 'default'} "
                               f"video driver): {e}") from None
        self._surface.fill((self.cfg.background,) * 3)
        pygame.display.flip()

    def _events(self) -> None:
        pg = self._pg
        for ev in pg.event.get():
            if ev.type == pg.QUIT or (ev.type == pg.KEYDOWN and ev.key == pg.K_ESCAPE):
                raise KeyboardInterrupt

    def present(self, screen: np.ndarray) -> None:
        pg = self._pg
        surf = pg.surfarray.make_surface(np.ascontiguousarray(screen.transpose(1, 0, 2)))
        self._surface.blit(surf, (0, 0))
        pg.display.flip()
        self._events()

    def screen(self) -> np.ndarray:
        return np.ascontiguousarray(self._pg.surfarray.array3d(self._surface).transpose(1, 0, 2))

    def close(self) -> None:
        if getattr(self, "_pg", None) is not None:
            self._pg.display.quit()
            self._pg = None

    def describe(self) -> dict[str, Any]:
        pg = self._pg
        return {"backend": self.name, "sdl_video_driver": pg.display.get_driver() if pg else None,
                "surface_px": list(self._surface.get_size()) if pg else None}


#: The display backends by rig-file name (``display.backend``).
DISPLAYS: dict[str, type[Display]] = {"virtual": VirtualDisplay, "pygame": PygameDisplay}


def open_display(cfg: DisplaySection) -> Display:
    """The backend ``cfg.backend`` (not opened yet: use it as a context manager)."""
    return DISPLAYS[cfg.backend](cfg)
