"""The report of a sweep, built from what is in storage alone.

Reads Tune's experiment (`<sweep>/tune`, through `ExperimentAnalysis`, no Ray
cluster needed) and the context the sweep job saved beside it
(`<sweep>/sweep.json`), and writes `<sweep>/report/` (paths: jobs/common/storage/layout.py):

    summary.txt            the top trials as a table, the best config and checkpoint
    trials.csv             one row per trial: hyperparameters, outcome, metrics
    learning_curves.png    episode return against env steps, every trial
    best.json              the best trial, its config and its checkpoint
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.common.errors import UserError
from jobs.common.reports.outcome import SweepOutcome
from jobs.common.reports.plots import learning_curve_figure
from jobs.common.reports.tables import table
from jobs.common.schema import dotted
from jobs.common.storage import layout
from jobs.common.storage import objects as storage

TOP_N = 10


@dataclass
class ReportContext:
    """What the report needs to know about the sweep, saved at submission."""

    name: str
    dimensions: list[dict[str, Any]]  # {"key", "primitive", "args", "encoded"}
    metric: str
    mode: str
    best_metric: str
    best_mode: str
    target_return: float | None
    env: str
    trial_count: int

    @classmethod
    def of(cls, sweep) -> ReportContext:
        keys = {d.key: d for d in sweep.dimensions + sweep.mutations}
        return cls(
            name=sweep.name,
            dimensions=[
                {"key": d.key, "primitive": d.primitive, "args": list(d.args), "encoded": d.encoded}
                for d in keys.values()
            ],
            metric=sweep.metric,
            mode=sweep.spec.mode,
            best_metric=sweep.best_metric,
            best_mode=sweep.best_mode,
            target_return=sweep.base_experiment.stop.episode_return_mean,
            env=sweep.base_experiment.env,
            trial_count=sweep.trial_count(),
        )


def save_context(storage_uri: str, context: ReportContext) -> None:
    folder = layout.sweep(storage_uri, context.name)
    storage.write_bytes(folder.context, json.dumps(asdict(context), indent=2).encode())


def load_context(storage_uri: str, name: str) -> ReportContext:
    folder = layout.sweep(storage_uri, name)
    data = storage.read_json(folder.context)
    if data is None:
        raise UserError(
            f"no sweep named '{name}' in {storage_uri} (no {folder.context}); "
            "check NAME and the storage (RL_STORAGE_URI)"
        )
    return ReportContext(**data)


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


def _lookup(config: dict[str, Any], key: str, encoded: bool) -> Any:
    value = dotted.get(config, dotted.split(key))
    return json.loads(value) if encoded and isinstance(value, str) else value


def _outcome(status: str, result: dict[str, Any]) -> str:
    if status == "TERMINATED":
        return "finished" if result.get("stop_reason") else "stopped early"
    return {"ERROR": "error", "RUNNING": "running", "PENDING": "pending", "PAUSED": "paused"}.get(
        status, status.lower()
    )


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def trial_rows(context: ReportContext, analysis) -> list[dict[str, Any]]:
    rows = []
    for trial in analysis.trials:
        result = trial.last_result or {}
        row: dict[str, Any] = {"trial_id": trial.trial_id, "outcome": _outcome(trial.status, result)}
        for dim in context.dimensions:
            row[dim["key"]] = _lookup(trial.config, dim["key"], dim["encoded"])
        row.update(
            {
                "episode_return_mean": _number(result.get("episode_return_mean")),
                "episode_len_mean": _number(result.get("episode_len_mean")),
                "env_steps_to_solve": _number(result.get("env_steps_to_solve")),
                "env_steps": int(result.get("env_steps") or 0),
                "iterations": int(result.get("iteration") or 0),
                "time_s": round(_number(result.get("time_s")), 1),
                "stop_reason": result.get("stop_reason") or "",
                "checkpoint": result.get("checkpoint") or "",
            }
        )
        rows.append(row)
    return rank(rows, context.best_metric, context.best_mode)


def rank(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Best first; trials without a value for the metric last."""
    sign = -1 if mode == "max" else 1

    def key(row):
        value = row[metric]
        return (1, 0.0) if value is None or math.isnan(value) else (0, sign * value)

    return sorted(rows, key=key)


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def short_names(context: ReportContext) -> dict[str, str]:
    """training.lr -> lr, unless two keys share a last part."""
    lasts = [d["key"].rsplit(".", 1)[-1] for d in context.dimensions]
    return {
        d["key"]: (last if lasts.count(last) == 1 else d["key"])
        for d, last in zip(context.dimensions, lasts, strict=True)
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else json.dumps(value)
    return str(value)


def top_table(context: ReportContext, rows: list[dict[str, Any]], limit: int = TOP_N) -> str:
    names = short_names(context)
    columns = ["#", "trial", *names.values(), "return", "env_steps", "steps_to_solve", "iters", "time_s", "outcome"]
    cells = [
        [
            index,
            row["trial_id"],
            *(_cell(row[key]) for key in names),
            _cell(row["episode_return_mean"]),
            _cell(row["env_steps"]),
            _cell(row["env_steps_to_solve"]),
            _cell(row["iterations"]),
            _cell(row["time_s"]),
            row["outcome"],
        ]
        for index, row in enumerate(rows[:limit], start=1)
    ]
    return table(columns, cells)


def trials_csv(context: ReportContext, rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    fields = ["rank", "trial_id", "outcome", *(d["key"] for d in context.dimensions)]
    fields += [
        "episode_return_mean",
        "episode_len_mean",
        "env_steps_to_solve",
        "env_steps",
        "iterations",
        "time_s",
        "stop_reason",
        "checkpoint",
    ]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for index, row in enumerate(rows, start=1):
        writer.writerow({**{k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}, "rank": index})
    return buffer.getvalue().encode()


def curves_png(context: ReportContext, rows: list[dict[str, Any]], curves: dict[str, list[tuple[int, float]]]) -> bytes:
    out = io.BytesIO()
    title = f"{context.name}: {len(rows)} trials on {context.env}"
    with learning_curve_figure(title, context.target_return, out, size=(7, 4)) as axes:
        best = rows[0]["trial_id"] if rows else None
        for row in rows[::-1]:
            points = curves.get(row["trial_id"]) or []
            if not points:
                continue
            steps, returns = zip(*points, strict=True)
            if row["trial_id"] == best:
                axes.plot(steps, returns, color="tab:red", linewidth=2, label=f"best: {best}", zorder=3)
            else:
                axes.plot(steps, returns, color="tab:blue", alpha=0.25, linewidth=1)
    return out.getvalue()


def _curves(analysis) -> dict[str, list[tuple[int, float]]]:
    curves = {}
    frames = analysis.trial_dataframes
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        if frame is None or "env_steps" not in frame or "episode_return_mean" not in frame:
            continue
        curves[trial.trial_id] = [
            (int(s), float(r))
            for s, r in zip(frame["env_steps"], frame["episode_return_mean"], strict=True)
            if not math.isnan(float(r))
        ]
    return curves


@dataclass
class Report:
    uri: str
    summary: str
    best_checkpoint: str | None
    rows: list[dict[str, Any]]
    best_trial: str | None = None
    planned: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    best_metric: str | None = None
    best_value: float | None = None

    def outcome(self, name: str) -> SweepOutcome:
        """The sweep's record (outcome.json) as this report has it."""
        unfinished = sum(row["outcome"] in ("running", "pending", "paused") for row in self.rows)
        return SweepOutcome(sweep=name, trials=len(self.rows), report=self.uri, best_trial=self.best_trial,
                            best_checkpoint=self.best_checkpoint, unfinished=unfinished, planned=self.planned,
                            counts=self.counts, best_metric=self.best_metric, best_value=self.best_value)  # fmt: skip


def build_report(storage_uri: str, name: str) -> Report:
    """Read the sweep from storage, write <sweep>/report/, return what to print."""
    import logging

    from ray.tune import ExperimentAnalysis

    context = load_context(storage_uri, name)
    sweep = layout.sweep(storage_uri, name)
    experiment = sweep.tune
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(experiment)
    except Exception as err:  # noqa: BLE001 - Tune raises ValueError/FileNotFoundError/...
        raise UserError(f"sweep '{name}': cannot read Tune's experiment at {experiment}: {err}") from None
    rows = trial_rows(context, analysis)
    by = context.best_metric
    if rows and all(_missing(r[by]) for r in rows) and by != context.metric:
        # e.g. no trial reached the return that counts as solved: rank by the scheduler's metric.
        by = context.metric
        rows = rank(rows, by, context.mode)
    best = rows[0] if rows else None
    with_checkpoint = next((r for r in rows if r["checkpoint"] and not _missing(r[by])), None)

    names = short_names(context)
    counts = {
        o: sum(r["outcome"] == o for r in rows) for o in ("finished", "stopped early", "error", "running", "pending")
    }
    lines = [
        f"sweep {name}: {len(rows)} of {context.trial_count} trials "
        + ", ".join(f"{n} {o}" for o, n in counts.items() if n),
        f"ranked by {context.best_metric} ({context.best_mode})"
        if by == context.best_metric
        else f"no trial reported {context.best_metric}: ranked by {by} ({context.mode})",
        "",
        top_table(context, rows),
        "",
    ]
    best_record: dict[str, Any] = {"sweep": name, "metric": by}
    if best is None or _missing(best[by]):
        lines.append(f"best: none (no trial reported {by})")
    else:
        config = {key: best[key] for key in names}
        value = _cell(best[by])
        lines.append(f"best: {best['trial_id']} {by}={value} config={json.dumps(config)}")
        best_record.update(trial_id=best["trial_id"], value=best[by], config=config, row=best)
    if with_checkpoint and best and with_checkpoint is not best:
        lines.append(
            f"(the best trial has no checkpoint; the best one with a checkpoint is {with_checkpoint['trial_id']})"
        )
    best_checkpoint = with_checkpoint["checkpoint"] if with_checkpoint else None
    best_record["checkpoint"] = best_checkpoint
    summary = "\n".join(lines)

    storage.write_bytes(sweep.report_file("trials.csv"), trials_csv(context, rows))
    storage.write_bytes(sweep.report_file("learning_curves.png"), curves_png(context, rows, _curves(analysis)))
    storage.write_bytes(sweep.report_file("best.json"), json.dumps(best_record, indent=2, default=str).encode())
    storage.write_bytes(sweep.report_file("summary.txt"), (summary + "\n").encode())
    best_trial = best["trial_id"] if best is not None and not _missing(best[by]) else None
    return Report(uri=sweep.report, summary=summary, best_checkpoint=best_checkpoint, rows=rows, best_trial=best_trial,
                  planned=context.trial_count, counts={o: n for o, n in counts.items() if n}, best_metric=by,
                  best_value=float(best[by]) if best_trial else None)  # fmt: skip


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
