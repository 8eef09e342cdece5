"""experiments.profile_run's reading of py-spy's raw (collapsed) stacks."""

from experiments.profile_run import frames, summarise

RAW = """\
Thread.run (threading.py:982);f (pkg/a.py:10);g (/v/site-packages/pkg/b.py:5) 3
Thread.run (threading.py:982);f (pkg/a.py:12);f (pkg/a.py:20) 1
Thread.run (threading.py:982);h (pkg/c.py:1) 4
"""  # py-spy record --format raw: outermost frame first, then the sample count


def test_frames_drop_line_numbers_and_site_packages():
    stack = RAW.splitlines()[0].rpartition(" ")[0]
    assert frames(stack) == ["Thread.run (threading.py)", "f (pkg/a.py)", "g (pkg/b.py)"]


def test_inclusive_shares_count_a_function_once_per_sample(tmp_path):
    raw = tmp_path / "p.txt"
    raw.write_text(RAW)
    s = summarise(raw, top=10)
    shares = dict(s["top"])
    assert s["samples"] == 8
    assert shares["Thread.run (threading.py)"] == 1.0
    assert shares["f (pkg/a.py)"] == 4 / 8  # 3 + 1 samples; the recursive call counts once
    assert shares["g (pkg/b.py)"] == 3 / 8
    assert shares["h (pkg/c.py)"] == 4 / 8
