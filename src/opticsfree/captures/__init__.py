"""Capture sets: the on-disk format shared by simulated and real lensless data, and its tools."""

from opticsfree.captures.format import CaptureSet, IndexRow, open_capture_set
from opticsfree.captures.loader import CaptureSplit, load_captures

__all__ = ["CaptureSet", "IndexRow", "open_capture_set", "CaptureSplit", "load_captures"]
