"""`evaluate`: run a model (or reasoner) over a benchmark, batched and resumable, and score it.

Every finished item is appended to a JSONL cache and flushed at once, so a crash loses at most
the batch in flight; a rerun with the same ``output`` reads the cache and asks the model only
about items it lacks. The first line of the cache is a header recording everything that
determines the answers: the benchmark, the policy, the model's identity (`model_fingerprint`: its
spatial config, its backbone's name and a digest of every weight) and the reasoner's settings (max
new tokens, max turns, sampling with its seed). Resuming a cache whose header differs is a
ValueError naming the fields that differ, so one model's answers are never reported as another's. Each record holds the
prediction, its score (``benchmark.score``), the tools the trace called and the stop reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from cooper_lib.config import SpatialConfig
from cooper_lib.eval.benchmarks.base import Benchmark, group_by, rate
from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.eval.benchmarks.nyu import DEPTH_MAP_POLICY, depth_model, depth_records, depth_run_metrics
from cooper_lib.modalities import available_modalities
from cooper_lib.model import SpatialModel
from cooper_lib.reasoning import InterleavedReasoner, ReasoningTrace

POLICIES: tuple[str, ...] = ("adaptive", "perceive_first", "text_only")
BASE_TOOLS: tuple[str, ...] = tuple(SpatialConfig.__dataclass_fields__["modalities"].default)
"""Tools every tool-use table shows (COOPER's two, a default config's modalities), used or not."""
TOOL_COLUMNS: tuple[str, ...] = (*BASE_TOOLS, "text_only")
"""The columns of a run that calls only `BASE_TOOLS`; other tools (any modality) add their own."""
"""Tool-use columns: items that called the depth tool, the segmentation tool, or no tool."""
CACHE_FORMAT = "cooper-lib/eval-run"
RUN_KEYS: tuple[str, ...] = ("benchmark", "policy", "model", "settings")
"""The header fields a resumed cache must match."""


@runtime_checkable
class Reasoner(Protocol):
    """What `evaluate` needs from a reasoner: batched runs returning one trace per question."""

    def run_batch(self, images: Sequence[Any], questions: Sequence[str]) -> list[ReasoningTrace]: ...


def tools_called(trace: ReasoningTrace) -> list[str]:
    """The modalities a trace called, each once, in first-call order."""
    called: list[str] = []
    for step in trace.steps:
        if step.kind == "tool_call" and step.modality not in called:
            called.append(step.modality)
    return called


def prediction_text(trace: ReasoningTrace) -> str:
    """The text scored for a trace: its final ``<answer>`` text, else its last turn (so a run that
    never answered is scored on what it wrote, and usually counts as an extraction failure)."""
    if trace.raw_answer is not None:
        return trace.raw_answer
    turns = trace.turns
    return turns[-1] if turns else ""


def tool_columns(records: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """`BASE_TOOLS`, then every other tool the records called (in order of first call), then
    ``"text_only"``."""
    called = (tool for record in records for tool in record["tools"])
    return (*dict.fromkeys([*BASE_TOOLS, *called]), "text_only")


def tool_use(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per category (and ``"all"``): item count ``n`` and, for each of `tool_columns`, the percent
    of items that called that tool, or no tool (an item calling two tools counts in both columns)."""
    columns = tool_columns(records)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["category"] or "-"].append(record)
        groups["all"].append(record)
    out = {}
    for name in sorted(groups, key=lambda g: (g == "all", g)):
        group = groups[name]
        row: dict[str, float] = {"n": len(group)}
        for column in columns:
            hits = sum(not r["tools"] if column == "text_only" else column in r["tools"] for r in group)
            row[column] = 100.0 * hits / len(group)
        out[name] = row
    return out


@dataclass
class EvalResult:
    """The outcome of `evaluate`.

    Attributes:
        benchmark: the benchmark's name.
        policy: the reasoner's policy name.
        records: one dict per item, in benchmark order (id, category, prediction, tools, score, ...).
        metrics: ``benchmark.aggregate`` of the scores (overall, per category, ...).
        tool_use: see `tool_use`.
        computed: items the model answered in this call (the others came from the cache).
        output: the JSONL cache, if one was used.
    """

    benchmark: str
    policy: str
    records: list[dict[str, Any]]
    metrics: dict[str, Any]
    tool_use: dict[str, dict[str, float]] = field(default_factory=dict)
    computed: int = 0
    output: Path | None = None

    def table(self) -> str:
        """A markdown table: per category, items, score (%), extraction failures and tool use (%);
        for a depth-map benchmark, its mean depth metrics."""
        if "metrics" in self.metrics:
            return "\n".join(
                [
                    f"**{self.benchmark}** (depth maps, alignment {self.metrics.get('mode', '-')}): "
                    f"{self.metrics['n']} images",
                    "",
                    "| metric | mean |",
                    "|---|---:|",
                    *(f"| {name} | {value:.4f} |" for name, value in self.metrics["metrics"].items()),
                ]
            )
        columns = [c for c in self.tool_use.get("all", {c: 0 for c in TOOL_COLUMNS}) if c != "n"]
        lines = [
            f"**{self.benchmark}** ({self.policy}): overall {self.metrics['overall']:.1f} % on "
            f"{self.metrics['n']} items",
            "",
            "| category | n | score % | failed | "
            + " | ".join(f"{c.replace('_', '-')} %" for c in columns)
            + " |",
            "|---|---:|---:|---:|" + "---:|" * len(columns),
        ]
        per_category = self.metrics.get("per_category", {})
        for name, use in self.tool_use.items():
            figures = per_category.get(name)
            if name == "all":
                figures = {"score": self.metrics["overall"], "failed": self.metrics["extraction_failures"]}
            score = "-" if figures is None else f"{figures['score']:.1f}"
            failed = "-" if figures is None else str(figures["failed"])
            lines.append(
                f"| {name} | {use['n']:.0f} | {score} | {failed} | "
                + " | ".join(f"{use[c]:.1f}" for c in columns)
                + " |"
            )
        return "\n".join(lines)


def read_cache(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and records of a run's JSONL cache. A truncated last line (a crash mid-write) is
    dropped; a malformed line elsewhere raises ValueError."""
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise ValueError(f"output: {path} is empty; expected a cooper-lib eval cache")
    parsed = []
    for number, line in enumerate(lines):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines) - 1 and number > 0:
                break
            raise ValueError(f"output: {path} line {number + 1} is not JSON ({err})") from err
    header = parsed[0]
    if header.get("format") != CACHE_FORMAT:
        raise ValueError(f"output: {path} is not a cooper-lib eval cache (first line {lines[0][:80]!r})")
    return header, parsed[1:]


def model_fingerprint(model: SpatialModel) -> dict[str, str]:
    """What identifies a model's answers: its backbone's name, and a SHA-256 digest of its spatial
    config and of every parameter and buffer (name, shape, dtype, and the float64 sum and absolute
    sum of its values, to 10 significant digits so CPU and GPU agree)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            values = tensor.detach()
            if not (values.is_floating_point() or values.is_complex()):
                values = values.double()
            total = float(values.sum(dtype=torch.float64))
            size = float(values.abs().sum(dtype=torch.float64))
            digest.update(f"{name}|{tuple(values.shape)}|{tensor.dtype}|{total:.9e}|{size:.9e};".encode())
    backbone = getattr(getattr(model.backbone, "config", None), "_name_or_path", "") or ""
    return {"backbone": f"{type(model.backbone).__name__}:{backbone}", "weights": digest.hexdigest()}


def _run_identity(runner: Any, depth: SpatialModel | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, settings) header fields of a run: the depth model's, or the reasoner's."""
    if depth is not None:
        return model_fingerprint(depth), {}
    model = getattr(runner, "model", None)
    identity = (
        model_fingerprint(model) if isinstance(model, SpatialModel) else {"reasoner": type(runner).__name__}
    )
    sampling = getattr(runner, "sampling", None)
    settings = {
        "max_new_tokens": getattr(runner, "max_new_tokens_per_turn", None),
        "max_turns": getattr(runner, "max_turns", None),
        "sampling": dict(vars(sampling)) if sampling is not None else None,
    }
    return identity, json.loads(json.dumps(settings, default=str))


class _Cache:
    """The JSONL cache: reads finished records, appends new ones with a flush (and fsync) each."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.exists() and path.stat().st_size:
            found, records = read_cache(path)
            differ = [key for key in RUN_KEYS if found.get(key) != header[key]]
            if differ:
                details = "; ".join(f"{key} {found.get(key)!r} there, {header[key]!r} now" for key in differ)
                raise ValueError(
                    f"output: {path} caches another run ({', '.join(differ)} differ: {details}); "
                    "use another output file, or delete this one to start over"
                )
            self.records = {r["id"]: r for r in records}
            self._rewrite(found, records)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._rewrite(header, [])
        self.handle = path.open("a", encoding="utf-8")

    def _rewrite(self, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """Write the cache anew (dropping a truncated last line) through a temporary file."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for line in (header, *records):
                handle.write(json.dumps(line) + "\n")
        os.replace(tmp, self.path)

    def append(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.records[record["id"]] = record

    def close(self) -> None:
        self.handle.close()


def _batches(items: list[BenchmarkItem], size: int) -> Iterator[list[BenchmarkItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _reasoner(
    model_or_reasoner: Any, policy: str | None, max_new_tokens: int | None, max_turns: int | None
) -> tuple[Any, str]:
    if isinstance(model_or_reasoner, SpatialModel):
        policy = policy or "adaptive"
        if policy not in POLICIES:
            raise ValueError(f"policy: expected one of {POLICIES}, got {policy!r}")
        reasoner = InterleavedReasoner(
            model_or_reasoner,
            policy=policy,
            max_new_tokens_per_turn=512 if max_new_tokens is None else max_new_tokens,
            max_turns=3 if max_turns is None else max_turns,
        )
        return reasoner, policy
    if isinstance(model_or_reasoner, Reasoner):
        if max_new_tokens is not None or max_turns is not None:
            raise ValueError(
                "max_new_tokens, max_turns: set them on the reasoner; they apply only to a reasoner "
                f"evaluate builds for a model, got max_new_tokens={max_new_tokens}, max_turns={max_turns}"
            )
        own = getattr(getattr(model_or_reasoner, "policy", None), "name", None)
        if policy is not None and own is not None and policy != own:
            raise ValueError(f"policy: the reasoner runs {own!r}, got policy={policy!r}; leave policy unset")
        return model_or_reasoner, own or policy or "custom"
    raise TypeError(
        "model_or_reasoner: expected a SpatialModel or a reasoner with run_batch(images, questions), "
        f"got {type(model_or_reasoner).__name__}"
    )


def _answer_records(reasoner: Any, benchmark: Benchmark, batch: list[BenchmarkItem]) -> list[dict[str, Any]]:
    """Cache records of one batch of questions answered by ``reasoner``."""
    traces = reasoner.run_batch([item.load_image() for item in batch], [item.question for item in batch])
    records = []
    for item, trace in zip(batch, traces, strict=True):
        text = prediction_text(trace)
        records.append(
            {
                "id": item.id,
                "category": item.category,
                "prediction": text,
                "tools": tools_called(trace),
                "stop_reason": trace.stop_reason,
                "generated_tokens": trace.generated_tokens,
                "score": benchmark.score(item, text),
            }
        )
    return records


def evaluate(
    model_or_reasoner: SpatialModel | Reasoner,
    benchmark: Benchmark,
    *,
    output: str | Path | None = None,
    batch_size: int = 8,
    policy: str | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    max_turns: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Answer every item of ``benchmark`` with interleaved reasoning and score the answers.

    Args:
        model_or_reasoner: a `SpatialModel` (wrapped in an `InterleavedReasoner` running
            ``policy``) or a ready reasoner (an `InterleavedReasoner` or any object with
            ``run_batch(images, questions)``).
        benchmark: a benchmark from `load_benchmark`. Question-answer benchmarks are answered by
            interleaved reasoning; a depth-map benchmark (NYU v2) is scored on the maps the model's
            depth head generates for each image (``SpatialModel.perceive``), with the
            benchmark's protocol, and records the policy ``"depth_map"``.
        output: JSONL cache; items already in it are not asked again (resume after a crash). A
            cache written by another model, policy or reasoner setting is a ValueError.
        batch_size: items per ``run_batch`` call.
        policy: ``"adaptive"`` (default for a model), ``"perceive_first"`` or ``"text_only"``; for
            a reasoner leave it unset (or give the reasoner's own).
        limit: evaluate only the first ``limit`` items.
        max_new_tokens: per-turn token budget of the reasoner built for a model (default 512);
            for a reasoner leave it unset (set it on the reasoner).
        max_turns: most turns of the reasoner built for a model (default 3); for a reasoner
            leave it unset.
        progress: show a tqdm progress bar.

    Example:
        >>> from cooper_lib import evaluate, load_benchmark, write_report
        >>> benchmark = load_benchmark("synthetic", "data/synth-eval")  # doctest: +SKIP
        >>> result = evaluate(model, benchmark, limit=50)  # doctest: +SKIP
        >>> write_report([result], "reports/synthetic")  # doctest: +SKIP
    """
    if not isinstance(benchmark, Benchmark):
        raise TypeError(f"benchmark: expected a Benchmark (load_benchmark), got {type(benchmark).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected None or a positive int, got {limit!r}")
    items = benchmark.items[:limit] if limit is not None else list(benchmark.items)
    depth_items = sum(item.map_modality is not None for item in items)
    if depth_items and depth_items != len(items):
        raise ValueError(
            f"benchmark: {benchmark.name} mixes {depth_items} depth-map items with "
            f"{len(items) - depth_items} question items; evaluate them as two benchmarks"
        )
    if depth_items:
        model = depth_model(model_or_reasoner, policy)
        policy_name = DEPTH_MAP_POLICY
        runner: Any = None

        def answer(batch: list[BenchmarkItem]) -> list[dict[str, Any]]:
            return depth_records(model, benchmark, batch)

    else:
        reasoner, policy_name = _reasoner(model_or_reasoner, policy, max_new_tokens, max_turns)
        model, runner = None, reasoner

        def answer(batch: list[BenchmarkItem]) -> list[dict[str, Any]]:
            return _answer_records(reasoner, benchmark, batch)

    cache = None
    if output is not None:
        identity, settings = _run_identity(runner, model)
        header = {
            "format": CACHE_FORMAT,
            "benchmark": benchmark.name,
            "policy": policy_name,
            "model": identity,
            "settings": settings,
        }
        cache = _Cache(Path(output), header)
    done: dict[str, dict[str, Any]] = dict(cache.records) if cache is not None else {}
    todo = [item for item in items if item.id not in done]
    computed = 0
    try:
        with tqdm(
            total=len(items), initial=len(items) - len(todo), desc=benchmark.name, disable=not progress
        ) as bar:
            for batch in _batches(todo, batch_size):
                for record in answer(batch):
                    done[record["id"]] = record
                    if cache is not None:
                        cache.append(record)
                    computed += 1
                bar.update(len(batch))
    finally:
        if cache is not None:
            cache.close()
    records = [done[item.id] for item in items]
    return EvalResult(
        benchmark=benchmark.name,
        policy=policy_name,
        records=records,
        metrics=benchmark.aggregate([r["score"] for r in records]),
        tool_use=tool_use(records),
        computed=computed,
        output=Path(output) if output is not None else None,
    )


def load_result(path: str | Path, benchmark: Benchmark | None = None) -> EvalResult:
    """An `EvalResult` rebuilt from a run's JSONL cache (e.g. to report runs made earlier).

    With ``benchmark`` the figures are its own ``aggregate`` (pairs, circular groups, ...); without,
    they are the generic ones: mean item score overall and per category, in percent.
    """
    header, records = read_cache(path)
    scores = [r["score"] for r in records]
    if not records:
        raise ValueError(f"path: {path} holds no finished items yet")
    if benchmark is not None:
        metrics = benchmark.aggregate(scores)
    elif all(s.get("answer_type") in available_modalities() for s in scores):  # map-scored items
        metrics = depth_run_metrics(header["benchmark"], scores)
    else:
        by_category = group_by((s for s in scores if s["category"]), lambda s: s["category"])
        metrics = {
            "benchmark": header["benchmark"],
            "n": len(scores),
            "overall": rate(scores),
            "extraction_failures": sum(bool(s["failed"]) for s in scores),
            "per_category": {
                name: {"n": len(g), "score": rate(g), "failed": sum(bool(s["failed"]) for s in g)}
                for name, g in sorted(by_category.items())
            },
        }
    return EvalResult(
        benchmark=header["benchmark"],
        policy=header["policy"],
        records=records,
        metrics=metrics,
        tool_use=tool_use(records),
        output=Path(path),
    )
