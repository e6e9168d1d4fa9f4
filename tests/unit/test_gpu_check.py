"""bench.gpu_check without a GPU: it refuses clearly; its parsing and verdicts on canned output."""

import pytest
import torch

from bench import gpu_check
from bench.learner_throughput import COLUMNS, table_rows


def recorded_run(tmp_path) -> list[dict]:
    """A run's progress.csv as jobs.train records it, read back as the GPU check reads it."""
    from jobs.common.reports.training import save_progress
    from jobs.common.storage import layout

    rows = [
        {"iteration": 1, "env_steps": 65536, "episode_return_mean": float("nan"), "train_time_s": 9.0},
        {"iteration": 2, "env_steps": 131072, "episode_return_mean": -312.5, "train_time_s": 12.2},
        {"iteration": 3, "env_steps": 196608, "episode_return_mean": 3012.0, "train_time_s": 15.3},
        {"iteration": 4, "env_steps": 262144, "episode_return_mean": 2950.4, "train_time_s": 18.6},
    ]
    save_progress(layout.experiment(str(tmp_path), "gpu-check-x"), rows)
    return gpu_check.read_progress(str(tmp_path), "gpu-check-x")


def row(variant, device, samples_per_s, median):
    return {
        "variant": variant, "device": device, "device_name": "NVIDIA H200" if device != "cpu" else "EPYC",
        "num_cpus_per_learner": 4 if device == "cpu" else 2, "torch_threads": 4 if device == "cpu" else 2,
        "samples_per_update": 65536, "minibatch_size": 16384, "sgd_steps_per_update": 40,
        "update_s_min": median, "update_s_median": median, "ms_per_sgd_step": 1000 * median / 40,
        "samples_trained_per_s": samples_per_s,
    }  # fmt: skip


def test_the_runs_recorded_iterations_are_read_back(tmp_path):
    progress = recorded_run(tmp_path)
    assert [p["iteration"] for p in progress] == [1, 2, 3, 4]
    assert progress[0]["return"] is None and progress[1]["return"] == -312.5
    assert progress[3] == {"iteration": 4, "env_steps": 262144, "return": 2950.4, "train_time_s": 18.6}


def test_training_figures_leave_out_the_first_iteration_for_the_rate(tmp_path):
    figures = gpu_check.training_figures(recorded_run(tmp_path))
    assert figures["env_steps_per_s"] == round(262144 / 18.6)
    assert figures["env_steps_per_s_after_first"] == round((262144 - 65536) / (18.6 - 9.0))
    assert figures["return_last"] == 2950.4 and figures["return_best"] == 3012.0
    assert figures["time_to_3000_s"] == 15.3
    assert gpu_check.training_figures([]) == {"iterations": 0}


def test_verdicts_against_the_targets(tmp_path):
    rows = [row("cpu learner", "cpu", 86000, 7.6), row("gpu learner + bf16", "cuda:0", 900000, 0.73)]
    figures = gpu_check.training_figures(recorded_run(tmp_path))
    verdicts = {check: (measured, verdict) for check, measured, _, verdict in gpu_check.targets(rows, figures, 150)}
    assert verdicts["GPU learner vs CPU learner"][1] == "met"
    assert verdicts["GPU learner vs CPU learner"][0].startswith("10.5x (gpu learner + bf16")
    assert verdicts["env steps/s end to end"][1] == "met"  # 20,480 after the first iteration
    assert verdicts["return 3,000"] == ("at 15s", "met")
    slow = gpu_check.targets([rows[0]], {"iterations": 0}, 150)
    assert [v for *_, v in slow] == [
        "unknown",
        "unknown",
        "unknown (run too short: a full run is `make train EXPERIMENT=...`)",
    ]


def test_learner_table_has_a_cell_per_column():
    rows = table_rows([row("cpu learner", "cpu", 86000, 7.6), row("gpu learner", "cuda:0", 500000, 1.3)])
    assert all(len(cells) == len(COLUMNS) for cells in rows)
    assert rows[1][-1] == f"{7.6 / 1.3:.2f}x"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_exits_non_zero_saying_why_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "gpu.json"
    status = gpu_check.main(["--out", str(out)])
    captured = capsys.readouterr()
    assert status == 1
    assert "bench.gpu_check needs a CUDA GPU" in captured.err
    assert "Nothing was run" in captured.err
    assert captured.out == "" and not out.exists()


def test_a_learner_benchmark_stopped_at_its_deadline_keeps_its_variants_and_names_the_rest():
    stopped = {
        "rows": [row("cpu learner", "cpu", 86000, 7.6), row("gpu learner", "cuda:0", 500000, 1.3)],
        "failed_variants": [{"variant": "gpu learner + torch.compile", "error": "BackendCompilerFailed: x\ny"}],
        "variants_not_run": ["gpu learner + bf16 + torch.compile"],
    }
    assert gpu_check.learner_failures(None, stopped) == [
        "learner benchmark timed out",
        "learner variant gpu learner + torch.compile: BackendCompilerFailed: x",
        "learner variants not run: gpu learner + bf16 + torch.compile",
    ]
    verdicts = gpu_check.targets(stopped["rows"], {"iterations": 0}, 150)
    assert verdicts[0][1].startswith(f"{500000 / 86000:.1f}x (gpu learner")  # the variants measured still count
    assert gpu_check.learner_failures(0, {"rows": [], "failed_variants": [], "variants_not_run": []}) == []
