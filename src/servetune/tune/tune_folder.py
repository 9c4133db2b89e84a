"""The tune folder's data files: candidates.csv (every candidate), frontier.csv/json, recommended.yaml."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from servetune.analyze.live_accuracy import LiveAccuracy
from servetune.config import DeploymentSpec, RunSummary
from servetune.deploy.manifests import render_manifests, to_yaml
from servetune.deploy.spec import spec_yaml
from servetune.tune.constraints import Constraints
from servetune.tune.frontier import Rule
from servetune.tune.search import Evaluation
from servetune.tune.space import Candidate
from servetune.tune.verify import Verification

CANDIDATE_FIELDS = ["model", "cpu_request", "cpu_limit", "memory_request_mb", "memory_limit_mb", "workers",
                    "threads", "replicas", "min_replicas", "max_replicas", "target_cpu_utilization",
                    "scale_down_stabilization_s", "scale_up"]
STATISTIC_COLUMNS = ["memory_requested_MiB", "cpu_requested_core", "response_time_ms", "p95_ms",
                     "failure_rate", "transaction_rate", "mean_replicas", "max_replicas_seen", "memory_used_MiB",
                     "cpu_used_core"]
# frontier.csv's last columns: a verified candidate's live accuracy (its labelling users' held-out labels in
# its real runs, pooled), empty for the others; `accuracy` before them is the model's offline one.
LIVE_COLUMNS = ["live_accuracy", "live_accuracy_low", "live_accuracy_high", "live_accuracy_n"]
LIVE_SOURCE = "held-out labels that labelling users gave in its real runs (95 % Wilson interval)"
# `seed` (the baselines the first generation was seeded with this candidate from) comes last: columns are only
# ever appended, so readers of older files keep working.
COLUMNS = ["id", "generation", "label", *CANDIDATE_FIELDS, "accuracy", "simulated", "feasible", "pareto",
           "violations", *STATISTIC_COLUMNS, "seed"]


def candidate_id(index: int) -> str:
    return f"c{index + 1:04d}"


def baseline_labels(names: Sequence[str], reserved: Sequence[str] = ()) -> dict[str, str]:
    """The label of each baseline as the user named it (a packaged spec, or a path: `/home/me/mine.yaml`,
    `../x.yaml`), shown in the tables and lines and used as its folder name inside the tune folder: the
    file's stem, with anything but letters, digits, `.`, `_` and `-` turned into `-`; a label already taken
    (by an earlier one, or one of `reserved`) gets `-2`, `-3`... A label is never a path, so a folder cannot
    land on the user's file or outside the tune folder."""
    labels: dict[str, str] = {}
    for given in names:
        stem = re.sub(r"\.ya?ml$", "", given.replace("\\", "/").rsplit("/", 1)[-1])
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-") or "spec"
        label, number = base, 1
        while label in labels.values() or label in reserved:
            number += 1
            label = f"{base}-{number}"
        labels[given] = label
    return labels


def statistic_values(statistics: RunSummary | None) -> dict[str, object]:
    if statistics is None:
        return dict.fromkeys(STATISTIC_COLUMNS, "")
    s = statistics

    def ms(value: float | None) -> object:
        return "" if value is None else round(value * 1000, 2)

    return {
        "memory_requested_MiB": round(s.memory_requested_KB / 1024, 1), "cpu_requested_core": round(
            s.cpu_requested_core, 4), "response_time_ms": ms(s.response_time_s), "p95_ms": ms(s.latency_p95_s),
        "failure_rate": round(s.failure_rate, 6), "transaction_rate": round(s.transaction_rate, 3),
        "mean_replicas": round(s.mean_replicas, 3), "max_replicas_seen": s.max_replicas,
        "memory_used_MiB": "" if s.memory_used_KB is None else round(s.memory_used_KB / 1024, 1),
        "cpu_used_core": "" if s.cpu_used_core is None else round(s.cpu_used_core, 4),
    }


def candidate_values(candidate: Candidate) -> dict[str, object]:
    return {name: "" if getattr(candidate, name) is None else getattr(candidate, name) for name in CANDIDATE_FIELDS}


def write_candidates(evaluations: Sequence[Evaluation], front: Sequence[Evaluation], path: Path) -> Path:
    """Every evaluated candidate, in the order evaluated, with its prediction and what it breaks."""
    on_front = {id(e) for e in front}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for index, e in enumerate(evaluations):
            writer.writerow({
                "id": candidate_id(index), "generation": e.generation, "label": e.candidate.label(),
                **candidate_values(e.candidate), "accuracy": "" if e.accuracy is None else e.accuracy,
                "simulated": e.statistics is not None, "feasible": e.feasible, "pareto": id(e) in on_front,
                "violations": "; ".join(v.message for v in e.violations), **statistic_values(e.statistics),
                "seed": e.seeded_from,
            })
    return path


def live_values(live: LiveAccuracy | None) -> dict[str, object]:
    if live is None:
        return dict.fromkeys(LIVE_COLUMNS, "")
    low, high = live.interval
    return {"live_accuracy": round(live.value, 6), "live_accuracy_low": round(low, 6),
            "live_accuracy_high": round(high, 6), "live_accuracy_n": live.n}


def write_frontier(front: Sequence[Evaluation], ids: dict[int, str], specs: Sequence[DeploymentSpec],
                   constraints: Constraints, rule: Rule, out: Path,
                   live: Mapping[str, LiveAccuracy | None] | None = None) -> tuple[Path, Path]:
    """frontier.csv (one row per Pareto candidate, in the rule's order) and frontier.json (with specs).
    `accuracy` is the model's offline one; `live` (by candidate id), what a verified candidate's labelling
    users measured in its real runs."""
    live = live or {}
    rows = [{"rank": rank + 1, "id": ids[id(e)], "label": e.candidate.label(), **candidate_values(e.candidate),
             "accuracy": "" if e.accuracy is None else e.accuracy, **statistic_values(e.statistics),
             **live_values(live.get(ids[id(e)]))}
            for rank, e in enumerate(front)]
    csv_path = out / "frontier.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["rank", "id", "label", *CANDIDATE_FIELDS, "accuracy", *STATISTIC_COLUMNS,
                                         *LIVE_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    document = {
        "rule": rule.value,
        "constraints": dict(constraints.describe()),
        "candidates": [
            {**{k: v for k, v in row.items() if k not in LIVE_COLUMNS}, "accuracy": e.accuracy,
             "accuracy_measured": e.accuracy is not None, "live_accuracy": live_record(live.get(row["id"])),
             "spec": spec.model_dump(mode="json"),
             "statistics": e.statistics.model_dump(mode="json", exclude={"phases"}) if e.statistics else None}
            for row, e, spec in zip(rows, front, specs, strict=True)
        ],
    }
    json_path = out / "frontier.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path


def live_record(live: LiveAccuracy | None) -> dict | None:
    """A live accuracy in a JSON file, saying what it is."""
    return None if live is None else {**live.as_dict(), "source": LIVE_SOURCE}


def write_verifications(verifications: Sequence[Verification], path: Path) -> Path:
    """verification.json: each spec run for real (the bounding baselines first, then the candidates), its
    verdict, run folders, and its offline and live accuracy (null where not measured)."""
    document = [{
        "label": v.label, "spec": str(v.spec_file), "verdict": v.verdict(), "passed": v.passed,
        "runs": [str(run.run_dir) for run in v.repeats], "offline_accuracy": v.offline_accuracy,
        "live_accuracy": live_record(v.live),
    } for v in verifications]
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def write_spec(spec: DeploymentSpec, path: Path, comment: str = "") -> Path:
    """A spec ready for `servetune deploy apply|render` and `servetune run -c`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(header + spec_yaml(spec, every_field=True), encoding="utf-8")
    return path


def write_manifests(spec: DeploymentSpec, path: Path) -> Path:
    path.write_text(to_yaml(render_manifests(spec)), encoding="utf-8")
    return path
