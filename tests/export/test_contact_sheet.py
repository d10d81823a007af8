"""Contact sheet layout: sizes, where each view lands, labels, and the PNG round trip."""

import imageio.v3 as imageio_v3
import numpy as np
import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.export import contact_sheet, save_png
from ssd3d.export.contact_sheet import LABEL_BAND, SEPARATOR_RGB

V, H, W, UP, SEP = 8, 4, 5, 3, 2


def views(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(V, 3, H, W, generator=g)


def as_tile(image_chw):
    """[3, H, W] in [0, 1] -> the uint8 [H*UP, W*UP, 3] tile the sheet should hold."""
    tile = (image_chw.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return tile.repeat(UP, axis=0).repeat(UP, axis=1)


def test_views_land_in_their_tiles_with_normals_below():
    rgb, normal = views(0), views(1) * 2 - 1  # normals in [-1, 1]
    sheet = contact_sheet(rgb, normal, upscale=UP, separator=SEP)
    th, tw = H * UP, W * UP
    assert sheet.shape == (2 * th + SEP, V * tw + (V - 1) * SEP, 3)
    assert sheet.dtype == np.uint8
    for i in range(V):
        x = i * (tw + SEP)
        np.testing.assert_array_equal(sheet[:th, x : x + tw], as_tile(rgb[i]))
        np.testing.assert_array_equal(sheet[th + SEP :, x : x + tw], as_tile((normal[i] + 1) / 2))
    assert (sheet[th : th + SEP] == SEPARATOR_RGB).all()  # between the rows
    assert (sheet[:, tw : tw + SEP] == SEPARATOR_RGB).all()  # between views 0 and 1


def test_unsigned_normals_are_used_as_they_are_and_rgb_only_has_one_row():
    rgb, normal = views(2), views(3)
    sheet = contact_sheet(rgb, normal, upscale=UP, separator=SEP, normals_signed=False)
    np.testing.assert_array_equal(sheet[H * UP + SEP :, : W * UP], as_tile(normal[0]))
    single = contact_sheet(rgb.numpy(), None, upscale=UP, separator=SEP)
    assert single.shape == (H * UP, V * W * UP + (V - 1) * SEP, 3)
    np.testing.assert_array_equal(single, sheet[: H * UP])


def test_labels_add_a_band_with_text_above_each_tile():
    rgb = views(4)
    labels = [f"{45 * i} deg" for i in range(V)]
    sheet = contact_sheet(rgb, None, labels=labels, upscale=UP, separator=SEP)
    tw = W * UP
    assert sheet.shape[0] == LABEL_BAND + H * UP
    np.testing.assert_array_equal(sheet[LABEL_BAND:, :tw], as_tile(rgb[0]))
    for i in range(V):
        band = sheet[:LABEL_BAND, i * (tw + SEP) : i * (tw + SEP) + tw]
        assert (band < 128).any(), f"no text drawn for view {i}"
    with pytest.raises(SSD3DError, match="labels"):
        contact_sheet(rgb, None, labels=labels[:3])


def test_default_upscale_reaches_the_minimum_tile():
    sheet = contact_sheet(torch.rand(2, 3, 32, 32), None, separator=0)
    assert sheet.shape == (128, 256, 3)  # 32 px tiles enlarged 4x


def test_save_png_round_trips_and_leaves_no_temp(tmp_path):
    sheet = contact_sheet(views(5), views(6), upscale=UP, separator=SEP)
    path = save_png(sheet, tmp_path / "sheet.png")
    np.testing.assert_array_equal(imageio_v3.imread(path), sheet)
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(SSD3DError, match="image"):
        save_png(sheet.astype(np.float32), tmp_path / "bad.png")
