"""DJI SRT sidecars: each known form read, malformed cues refused with their line numbers
while the cues around them are kept, positions interpolated between cues."""

from __future__ import annotations

from datetime import datetime

import pytest

from ingest.batch import srt

NEW = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2024-08-07 12:34:24.380
[iso: 100] [shutter: 1/3200.0] [fnum: 1.7] [ev: 0] [color_md: default] [focal_len: 24.00] [latitude: 30.319116] [longitude: 120.159334] [rel_alt: 98.100 abs_alt: 104.927] [ct: 5310] </font>
"""
NEW_GIMBAL = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2024-08-07 12:34:24.380
[iso: 100] [shutter: 1/3200.0] [fnum: 1.7] [ev: 0] [focal_len: 24.00] [latitude: 30.319116] [longitude: 120.159334] [rel_alt: 98.100 abs_alt: 104.927] [gb_yaw: -92.3 gb_pitch: -45.0 gb_roll: 0.0] [ct: 5310] </font>
"""
MAVIC_PRO = """1
00:00:00,000 --> 00:00:00,033
<font size="36">SrtCnt : 1, DiffTime : 33ms
2019-04-28 15:21:40,143,594
[iso : 100] [shutter : 1/1000.0] [fnum : 280] [ev : 0] [ct : 5500] [color_md : default] [focal_len : 240] [latitude : 30.319116] [longitude : 120.159334] [altitude: 16.100000] </font>
"""
OLD = """1
00:00:00,000 --> 00:00:01,000
HOME(120.159000,30.319000) 2018.05.06 11:16:58
GPS(120.159334,30.319116,27) BAROMETER:20.5
ISO:100 Shutter:60 EV:0 Fnum:F2.2
"""
OLD_HOME_ALT = """1
00:00:00,000 --> 00:00:01,000
HOME(120.159000,30.319000,12.0) 2018.05.06 11:16:58
GPS(120.159334,30.319116,52.0)
ISO:100 Shutter:60 EV:0 Fnum:F2.2
"""


@pytest.mark.parametrize("text, ts, rel_alt, yaw, pitch", [
    (NEW, datetime(2024, 8, 7, 12, 34, 24, 380000), 98.1, None, None),
    (NEW_GIMBAL, datetime(2024, 8, 7, 12, 34, 24, 380000), 98.1, -92.3, -45.0),
    (MAVIC_PRO, datetime(2019, 4, 28, 15, 21, 40, 143000), 16.1, None, None),
    (OLD, datetime(2018, 5, 6, 11, 16, 58), 20.5, None, None),
    (OLD_HOME_ALT, datetime(2018, 5, 6, 11, 16, 58), 40.0, None, None),
], ids=["new", "new-gimbal", "mavic-pro", "old-barometer", "old-home-alt"])
def test_each_form_is_read(text, ts, rel_alt, yaw, pitch):
    track = srt.parse(text)
    assert track.problems == []
    (cue,) = track.cues
    assert (cue.lat, cue.lon) == (30.319116, 120.159334)
    assert cue.ts == ts
    assert cue.rel_alt_m == pytest.approx(rel_alt)
    assert (cue.gimbal_yaw_deg, cue.gimbal_pitch_deg) == (yaw, pitch)


def _cue(n: int, lat: float, lon: float, *, timing: str | None = None) -> str:
    t0, t1 = (n - 1) * 33, n * 33
    timing = timing or f"00:00:00,{t0:03d} --> 00:00:00,{t1:03d}"
    return (f"{n}\n{timing}\n<font size=\"28\">FrameCnt: {n}, DiffTime: 33ms\n"
            f"2024-08-07 12:34:24.{t0:03d}\n[latitude: {lat}] [longitude: {lon}] "
            "[rel_alt: 40.000 abs_alt: 47.000] </font>\n\n")


MALFORMED = [
    ("counter", "x\n00:00:00,033 --> 00:00:00,066\n[latitude: 30.1] [longitude: 120.1]\n\n",
     "is not a number"),
    ("timing", "2\n00:00:00 -> 00:00:01\n[latitude: 30.1] [longitude: 120.1]\n\n",
     "is not 'HH:MM:SS,mmm --> HH:MM:SS,mmm'"),
    ("no position", "2\n00:00:00,033 --> 00:00:00,066\n[iso: 100] [rel_alt: 40.0]\n\n",
     "no position"),
    ("off the globe", "2\n00:00:00,033 --> 00:00:00,066\n[latitude: 130.1] [longitude: 120.1]\n\n",
     "off the globe"),
    ("no fix", "2\n00:00:00,033 --> 00:00:00,066\n[latitude: 0.000000] [longitude: 0.000000]\n\n",
     "no GPS fix"),
    ("bad number", "2\n00:00:00,033 --> 00:00:00,066\n[latitude: 30.1.2] [longitude: 120.1]\n\n",
     "is not a number"),
    ("timing missing", "2\n\n", "no timing line"),
]


@pytest.mark.parametrize("name, bad, reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_cue_is_refused_with_its_line_and_the_rest_kept(name, bad, reason):
    first = _cue(1, 30.1, 120.1)
    text = first + bad + _cue(3, 30.2, 120.2)
    bad_line = first.count("\n") + 1
    track = srt.parse(text)
    assert [c.index for c in track.cues] == [1, 3]
    (problem,) = track.problems
    assert problem.startswith(f"line {bad_line}: ") and reason in problem


def test_a_file_without_any_good_cue_is_an_error_listing_each():
    with pytest.raises(srt.SrtError) as err:
        srt.parse(MALFORMED[0][1] + MALFORMED[2][1])
    assert [p.split(":")[0] for p in err.value.problems] == ["line 1", "line 5"]


def test_pose_is_interpolated_between_cues_and_held_at_the_ends():
    track = srt.parse(_cue(1, 30.0, 120.0) + _cue(2, 30.001, 120.002))
    mid = track.pose_at(0.0165)
    assert mid.lat == pytest.approx(30.0005) and mid.lon == pytest.approx(120.001)
    assert mid.track_deg == pytest.approx(59.9, abs=0.5)  # north-east-ish, east weighs more
    assert track.pose_at(-1).lat == 30.0 and track.pose_at(99).lat == 30.001
    assert mid.ts == datetime(2024, 8, 7, 12, 34, 24, 16500)
