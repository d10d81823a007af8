"""The standard 3D Gaussian Splatting .ply, the file splat viewers and editors open.

Layout (3DGS's save_ply): binary little endian, one ``vertex`` element, every property a float:
``x y z nx ny nz f_dc_0..2 f_rest_0..M-1 opacity scale_0..2 rot_0..3``, with

- ``f_dc_c``: the SH band-0 coefficient of channel c (colour = 0.5 + 0.2821 f_dc),
- ``f_rest``: the higher bands channel by channel (all of red's K - 1 coefficients, then
  green's, then blue's), M = 3 (K - 1),
- ``opacity`` as a logit, ``scale_*`` as natural logs, ``rot_*`` a quaternion (w, x, y, z),
- normals zero (3DGS writes zeros; viewers ignore them).

Written with numpy structured arrays rather than trimesh: trimesh's PLY writer is for meshes
and point clouds (it emits its own colour properties and chooses property order), while viewers
expect exactly these names in exactly this order, which a structured dtype writes byte for byte.
Coordinates are ssd3d's world frame (z up); viewers that assume a COLMAP frame show it rotated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssd3d.atomic import atomic_write_bytes
from ssd3d.errors import SSD3DError

MAX_REST = 45  # degree 3: 3 * (16 - 1)


@dataclass(frozen=True)
class SplatData:
    """N Gaussians in the stored parametrisation (float32 numpy arrays)."""

    means: np.ndarray  # [N, 3]
    log_scales: np.ndarray  # [N, 3]
    quaternions: np.ndarray  # [N, 4] (w, x, y, z)
    opacity_logits: np.ndarray  # [N]
    sh_dc: np.ndarray  # [N, 3]
    sh_rest: np.ndarray  # [N, K - 1, 3], K - 1 in 0, 3, 8, 15

    def __post_init__(self) -> None:
        n = len(self.means)
        expected = {
            "means": (n, 3),
            "log_scales": (n, 3),
            "quaternions": (n, 4),
            "opacity_logits": (n,),
            "sh_dc": (n, 3),
        }
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise SSD3DError(
                    f"splat {name} must have shape {list(shape)}; "
                    f"got {list(np.shape(getattr(self, name)))}"
                )
        rest = np.shape(self.sh_rest)
        if len(rest) != 3 or rest[0] != n or rest[2] != 3 or rest[1] not in (0, 3, 8, 15):
            raise SSD3DError(f"splat sh_rest must have shape [{n}, 0|3|8|15, 3]; got {list(rest)}")

    @property
    def count(self) -> int:
        return len(self.means)


def property_names(rest_per_channel: int) -> list[str]:
    """The vertex properties in file order for K - 1 = ``rest_per_channel``."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * rest_per_channel)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def splat_ply_bytes(data: SplatData) -> bytes:
    """The .ply file's bytes."""
    n, rest = data.count, data.sh_rest.shape[1]
    names = property_names(rest)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header += ["end_header"]
    columns = [
        np.asarray(data.means),
        np.zeros((n, 3)),
        np.asarray(data.sh_dc),
        # [N, K-1, 3] -> [N, 3, K-1] -> flat: each channel's coefficients together (3DGS).
        np.asarray(data.sh_rest).transpose(0, 2, 1).reshape(n, -1),
        np.asarray(data.opacity_logits).reshape(n, 1),
        np.asarray(data.log_scales),
        np.asarray(data.quaternions),
    ]
    body = np.concatenate([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    if not np.isfinite(body).all():
        raise SSD3DError("the Gaussians have non-finite values (NaN or inf): cannot export them")
    # A little-endian float32 table written row by row is exactly PLY's binary vertex list.
    table = body.astype("<f4")
    return ("\n".join(header) + "\n").encode("ascii") + table.tobytes()


def write_splat_ply(path: str | os.PathLike, data: SplatData) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    return atomic_write_bytes(Path(path), splat_ply_bytes(data))


def read_splat_ply(path: str | os.PathLike) -> SplatData:
    """Read a 3DGS .ply (as written by 3DGS or ``write_splat_ply``); SSD3DError if it is not one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SSD3DError(f"cannot read splat file {path}: {e.strerror}") from None
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply\n") or end < 0:
        raise SSD3DError(f"{path} is not a PLY file (no 'ply' ... 'end_header' header)")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise SSD3DError(f"{path}: only binary little-endian splat files are supported")
    count, names = None, []
    for line in lines:
        words = line.split()
        if words[:2] == ["element", "vertex"] and len(words) == 3:
            count = int(words[2])
        elif words[:1] == ["element"]:
            raise SSD3DError(f"{path}: unexpected element {' '.join(words[1:])!r} in a splat file")
        elif words[:1] == ["property"]:
            if len(words) != 3 or words[1] not in ("float", "float32"):
                raise SSD3DError(f"{path}: splat properties must be floats; got {line!r}")
            names.append(words[2])
    rest = sum(name.startswith("f_rest_") for name in names)
    if count is None or rest % 3 or rest > MAX_REST or names != property_names(rest // 3):
        raise SSD3DError(f"{path}: not the 3DGS vertex layout (properties {names})")
    body = raw[end + len(b"end_header\n") :]
    if len(body) != count * len(names) * 4:
        raise SSD3DError(
            f"{path}: expected {count} vertices of {len(names)} floats, "
            f"found {len(body)} bytes of data"
        )
    table = np.frombuffer(body, dtype="<f4").reshape(count, len(names)).astype(np.float32)
    col = {name: i for i, name in enumerate(names)}

    def take(*keys: str) -> np.ndarray:
        return table[:, [col[k] for k in keys]]

    k1 = rest // 3
    sh_rest = take(*[f"f_rest_{i}" for i in range(rest)]).reshape(count, 3, k1).transpose(0, 2, 1)
    return SplatData(
        means=take("x", "y", "z"),
        log_scales=take("scale_0", "scale_1", "scale_2"),
        quaternions=take("rot_0", "rot_1", "rot_2", "rot_3"),
        opacity_logits=take("opacity")[:, 0],
        sh_dc=take("f_dc_0", "f_dc_1", "f_dc_2"),
        sh_rest=np.ascontiguousarray(sh_rest),
    )
