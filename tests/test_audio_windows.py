"""Grouping transcript segments into overlapping windows."""

from encoders.whisper import Segment
from retrieval.audio import group_windows


def segments(*spans):
    return [Segment(start, end, f"s{index}") for index, (start, end) in enumerate(spans)]


def test_windows_hold_at_most_window_s_and_overlap():
    parts = segments(*[(i * 5.0, i * 5.0 + 4.5) for i in range(12)])  # 12 segments over 60 s
    windows = group_windows(parts, window_s=20, overlap_s=6)
    assert all(w.end_s - w.start_s <= 20 for w in windows)
    assert [w.text for w in windows][:2] == ["s0 s1 s2 s3", "s3 s4 s5 s6"]
    # Each window starts at the first segment within overlap_s of the previous window's end.
    for previous, current in zip(windows, windows[1:]):
        assert previous.end_s - 6 <= current.start_s < previous.end_s
    assert windows[-1].text.endswith("s11")


def test_a_segment_longer_than_a_window_gets_its_own():
    windows = group_windows(segments((0, 3), (3, 50), (50, 52)), window_s=10, overlap_s=2)
    assert [w.text for w in windows] == ["s0", "s1", "s2"]
    assert (windows[1].start_s, windows[1].end_s) == (3, 50)


def test_blank_segments_are_skipped_and_nothing_spoken_gives_nothing():
    parts = [Segment(0, 1, "  "), Segment(1, 2, "hello"), Segment(2, 3, "")]
    assert [w.text for w in group_windows(parts, 30, 5)] == ["hello"]
    assert group_windows([Segment(0, 1, " ")], 30, 5) == []
