"""Atomic file writes for the exporters: the one helper lives in ``ssd3d.atomic``."""

from ssd3d.atomic import atomic_path, atomic_write_bytes

__all__ = ["atomic_path", "atomic_write_bytes"]
