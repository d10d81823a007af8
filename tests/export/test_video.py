"""Video writing: mp4 and gif read back with the right frames, sizes and settings."""

import imageio.v2 as imageio_v2
import imageio.v3 as imageio_v3
import numpy as np
import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.export import prepare_frames, write_video

N_FRAMES = 9


def coloured_frames(n=N_FRAMES, size=32):
    """Frame f is a flat colour that differs per frame, with a black square at column f."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for f in range(n):
        frames[f] = (20 * f + 40, 200 - 15 * f, 128)
        frames[f, 8:16, 2 * f : 2 * f + 4] = 0
    return frames


def test_mp4_reads_back_with_all_frames_in_order(tmp_path):
    frames = coloured_frames()
    path = write_video(frames, tmp_path / "turn.mp4", fps=10)
    reader = imageio_v2.get_reader(path, format="FFMPEG")
    meta = reader.get_meta_data()
    back = np.stack([frame for frame in reader.iter_data()])
    reader.close()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["fps"] == 10
    assert back.shape == (N_FRAMES, 256, 256, 3)  # 32 px upscaled 8x to the 256 minimum
    # Lossy, but each frame's flat colour and square survive, in order.
    expected = prepare_frames(frames).astype(float)
    assert np.abs(back.astype(float) - expected).mean(axis=(1, 2, 3)).max() < 4
    assert list(tmp_path.iterdir()) == [path]


def test_gif_reads_back_exactly_and_loops_forever(tmp_path):
    frames = coloured_frames()
    path = write_video(frames, tmp_path / "turn.gif", fps=10)
    back = imageio_v3.imread(path, index=None)[..., :3]
    assert back.shape == (N_FRAMES, 256, 256, 3)
    np.testing.assert_array_equal(back, prepare_frames(frames))  # few colours: no dithering
    assert imageio_v3.immeta(path)["loop"] == 0
    assert list(tmp_path.iterdir()) == [path]


def test_torch_float_frames_match_uint8_frames():
    frames = coloured_frames()
    as_torch = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_array_equal(prepare_frames(as_torch), prepare_frames(frames))


def test_odd_sizes_are_made_even_by_repeating_the_edge():
    frames = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(1, 5, 7, 3)
    out = prepare_frames(frames, min_size=1)
    assert out.shape == (1, 6, 8, 3)
    np.testing.assert_array_equal(out[:, :5, :7], frames)
    np.testing.assert_array_equal(out[:, 5, :7], frames[:, 4])
    np.testing.assert_array_equal(out[:, :5, 7], frames[:, :, 6])
    # Upscaling is an integer nearest-neighbour factor: 5 px short side -> 3x for 12 px.
    big = prepare_frames(frames, min_size=12)
    assert big.shape == (1, 16, 22, 3)  # 15 x 21, then padded to even
    np.testing.assert_array_equal(big[0, 3:6, 6:9], np.broadcast_to(frames[0, 1, 2], (3, 3, 3)))


def test_bad_suffix_or_fps_raise_and_write_nothing(tmp_path):
    with pytest.raises(SSD3DError, match="path"):
        write_video(coloured_frames(), tmp_path / "turn.avi")
    with pytest.raises(SSD3DError, match="fps"):
        write_video(coloured_frames(), tmp_path / "turn.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []
