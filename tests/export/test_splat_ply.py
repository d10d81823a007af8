"""The 3DGS .ply: header, property order, channel-major SH rest, round trip, bad files."""

import numpy as np
import pytest

from ssd3d.errors import SSD3DError
from ssd3d.export.splat_ply import SplatData, read_splat_ply, splat_ply_bytes, write_splat_ply


def data(n=5, rest=3, seed=0):
    rng = np.random.default_rng(seed)
    return SplatData(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        log_scales=rng.normal(size=(n, 3)).astype(np.float32),
        quaternions=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
        sh_rest=rng.normal(size=(n, rest, 3)).astype(np.float32),
    )


def test_header_lists_the_3dgs_properties_in_order():
    raw = splat_ply_bytes(data(n=5, rest=3))
    header, _, body = raw.partition(b"end_header\n")
    lines = header.decode("ascii").splitlines()
    names = [line.split()[2] for line in lines if line.startswith("property")]
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 5"]
    assert all(line.startswith("property float ") for line in lines[3:])
    assert names == (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(9)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    assert len(body) == 5 * len(names) * 4


def test_fields_are_stored_raw_and_sh_rest_channel_by_channel(tmp_path):
    d = data(n=4, rest=8)
    path = write_splat_ply(tmp_path / "g.ply", d)
    raw = path.read_bytes()
    body = raw.partition(b"end_header\n")[2]
    table = np.frombuffer(body, dtype="<f4").reshape(4, -1)
    assert table.shape[1] == 9 + 24 + 8
    np.testing.assert_array_equal(table[:, 0:3], d.means)
    np.testing.assert_array_equal(table[:, 3:6], 0.0)
    np.testing.assert_array_equal(table[:, 6:9], d.sh_dc)
    # f_rest_0..7 are red's 8 coefficients, then green's, then blue's (3DGS's transpose).
    np.testing.assert_array_equal(table[:, 9:17], d.sh_rest[:, :, 0])
    np.testing.assert_array_equal(table[:, 25:33], d.sh_rest[:, :, 2])
    np.testing.assert_array_equal(table[:, 33], d.opacity_logits)
    np.testing.assert_array_equal(table[:, 34:37], d.log_scales)
    np.testing.assert_array_equal(table[:, 37:41], d.quaternions)


@pytest.mark.parametrize("rest", [0, 3, 15])
def test_round_trip(tmp_path, rest):
    d = data(n=7, rest=rest, seed=rest)
    back = read_splat_ply(write_splat_ply(tmp_path / "g.ply", d))
    for name in ("means", "log_scales", "quaternions", "opacity_logits", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(back, name), getattr(d, name), err_msg=name)


def test_bad_shapes_values_and_files_are_errors(tmp_path):
    d = data()
    with pytest.raises(SSD3DError, match="sh_rest must have shape"):
        SplatData(d.means, d.log_scales, d.quaternions, d.opacity_logits, d.sh_dc, d.sh_dc[:, None])
    with pytest.raises(SSD3DError, match="quaternions must have shape"):
        SplatData(d.means, d.log_scales, d.means, d.opacity_logits, d.sh_dc, d.sh_rest)
    bad = SplatData(
        d.means * np.nan, d.log_scales, d.quaternions, d.opacity_logits, d.sh_dc, d.sh_rest
    )
    with pytest.raises(SSD3DError, match="non-finite"):
        splat_ply_bytes(bad)
    (tmp_path / "a.ply").write_bytes(b"not a ply")
    with pytest.raises(SSD3DError, match="not a PLY"):
        read_splat_ply(tmp_path / "a.ply")
    truncated = splat_ply_bytes(d)[:-4]
    (tmp_path / "b.ply").write_bytes(truncated)
    with pytest.raises(SSD3DError, match="expected 5 vertices"):
        read_splat_ply(tmp_path / "b.ply")
    with pytest.raises(SSD3DError, match="cannot read"):
        read_splat_ply(tmp_path / "missing.ply")
