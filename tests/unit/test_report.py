"""progress.csv across resumes, and the learning-curve PNG."""

from jobs.common.reports import training as report
from jobs.common.storage.layout import RunFolder


def test_progress_round_trips_with_integer_counters(tmp_path):
    uri = RunFolder(str(tmp_path / "exp"))
    rows = [
        {"iteration": 1, "env_steps": 2000, "episode_return_mean": 21.5, "train_time_s": 0.7},
        {"iteration": 2, "env_steps": 4000, "episode_return_mean": float("nan"), "train_time_s": 1.4},
    ]
    report.save_progress(uri, rows)
    loaded = report.load_progress(uri)
    assert [r["iteration"] for r in loaded] == [1, 2]
    assert loaded[0]["env_steps"] == 2000 and loaded[0]["episode_return_mean"] == 21.5


def test_learning_curve_is_a_png():
    rows = [{"iteration": i, "env_steps": 1000 * i, "episode_return_mean": 20.0 * i, "train_time_s": i} for i in (1, 2)]
    assert report.learning_curve_png(rows, "t", 450.0)[:8] == b"\x89PNG\r\n\x1a\n"
