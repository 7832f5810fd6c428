"""Sampled decoding: the frames a run keeps are exactly the frames a full decode shows at
those indices, though most frames are never decoded; a truncated file is read up to the
damage and the rest reported."""

from __future__ import annotations

import av
import numpy as np

from ingest.batch import video


def _all_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_index_and_sampling(short_clip):
    index = video.probe(short_clip.path)
    assert (index.frames, index.fps, index.width, index.height) == (120, 30.0, 640, 360)
    assert index.keyframes == [index.pts[i] for i in range(0, 120, 15)]
    assert index.damage is None and index.codec == "h264"
    assert index.sample(1) == [0, 30, 60, 90]
    assert index.sample(2) == [0, 15, 30, 45, 60, 75, 90, 105]
    assert index.media_time(45) == 1.5


def test_sampled_frames_equal_a_full_decode(short_clip):
    index = video.probe(short_clip.path)
    wanted = [0, 7, 30, 44, 45, 100, 119]  # within a keyframe interval, on one, across
    got = list(video.decode(short_clip.path, index, wanted))
    full = _all_frames(short_clip.path)
    assert [d.index for d in got] == wanted
    for d in got:
        assert d.error is None and np.array_equal(d.image, full[d.index]), d.index
        assert d.media_s == d.index / 30


def test_truncated_file_is_read_up_to_the_damage(short_clip, tmp_path):
    data = short_clip.path.read_bytes()
    cut = tmp_path / "cut.MP4"
    cut.write_bytes(data[: len(data) // 2])
    index = video.probe(cut)
    assert 20 < index.frames < 120
    assert "of the 120 frames its index lists" in index.damage
    wanted = index.sample(1)
    got = list(video.decode(cut, index, wanted))
    assert [d.index for d in got] == wanted
    assert all(d.image is not None for d in got[:-1])
