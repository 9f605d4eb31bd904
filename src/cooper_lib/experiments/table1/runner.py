"""`run_table1`: train and score every arm for every seed, resumably, then write the report.

Layout of ``out``::

    data/                      the shared datasets (`prepare_data`)
    seed-<s>/base/             the seed's base model every arm starts from (`train_base`)
    seed-<s>/<arm>/train/      the arm's stage folders (``final/`` models)
    seed-<s>/<arm>/results.json, DONE
    report.md, table1.png, results.json (every arm and seed)

A rerun skips every arm and seed whose ``DONE`` marker exists, and every stage whose final model
exists, so an interrupted run continues where it stopped.

Seeds and arms can train at once, each in a process of its own (``jobs``): first every seed's base
model, then every seed's arm groups (`arm_groups`: an arm with the arms that score its model). The
experiment's models are far too small to fill a GPU: on an H200 a step took what it takes on two
CPU cores (host-bound, benchmarks/RESULTS.md), so the run's time is set by how many steps run side
by side. The processes are started with ``spawn`` (CUDA cannot be used in a forked child), so a
script that calls `run_table1` with ``jobs > 1`` needs the usual ``if __name__ == "__main__":`` guard.
A process ends on its own once the run that started it is gone (`_stop_with_parent`): a SIGTERM or
SIGKILL to the command (``timeout``, ``kill``) does not reach the processes, which would train on.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from cooper_lib.experiments.table1.arms import ARMS, check_turn_budget, train_arm, train_base
from cooper_lib.experiments.table1.config import Table1Config
from cooper_lib.experiments.table1.data import prepare_data
from cooper_lib.experiments.table1.evaluation import (
    answer,
    fixed_map_quality,
    held_out_benchmark,
    map_elasticity,
    map_quality,
    priors,
)
from cooper_lib.experiments.table1.report import bar_chart, markdown

DONE = "DONE"


def _device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for, but torch sees no CUDA device")
    return device


def _jobs(jobs: int | None, tasks: int) -> int:
    """Processes to train in: `jobs`, or by default one per CPU core, at most one per (seed, arm
    group). The experiment's steps are host-bound on either device: on the 2-core CPU a caption step
    took 157 ms with one thread and 164-200 ms with two, and two one-thread processes made 1.5 times
    the steps of one (benchmarks/RESULTS.md)."""
    if jobs is None:
        return max(1, min(tasks, os.cpu_count() or 1))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive int (processes trained at once), got {jobs!r}")
    return min(jobs, tasks)


def arm_groups(names: Sequence[str]) -> list[list[str]]:
    """`names` in groups that train one model: an arm with the arms that score its model
    (``model_of``), in the order of `names`; the unit one process trains and scores."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(ARMS[name].model_of or name, []).append(name)
    return list(groups.values())


def _stage1_data(config: Table1Config) -> str:
    """The report's words for a stage-1 set other than the QA scenes ('' when it is them)."""
    extra = config.map_scene_count - config.train_scenes
    if extra > 0:
        return f"stage 1 on the maps of those scenes and {extra} more (no questions asked of them); "
    if extra < 0:
        return f"stage 1 on the maps of the first {config.map_scene_count} of them; "
    return ""


def _training_questions(config: Table1Config) -> str:
    """The report's words for the SFT sets' questions: scenes, questions a scene, and how many a
    category when ``train_per_category`` asks more than one."""
    if config.train_per_category == 1:
        return f"{config.train_scenes} training scenes x {config.questions_per_scene} questions (short answers); "
    most = config.questions_per_scene * config.train_per_category
    return (
        f"{config.train_scenes} training scenes x up to {most} questions "
        f"({config.train_per_category} a category, short answers); "
    )


def _check_same_config(path: Path, config: Table1Config) -> None:
    """Refuse to resume a run made with other settings: its data, base models and finished arms
    would be reused as they are. A field the run's ``config.json`` lacks was added since, with a
    default that keeps what the run did: it counts as that default."""
    if not path.exists():
        return
    defaults = json.loads(json.dumps(Table1Config().to_dict()))
    before = {**defaults, **json.loads(path.read_text())}
    now = json.loads(json.dumps(config.to_dict()))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        raise ValueError(
            f"out: {path.parent} holds a run made with other settings ({', '.join(changed)} differ); "
            f"resume it with its own settings (`--config {path}` on the command line, "
            "`Table1Config.from_dict` in Python), or give a new output folder"
        )


def run_arm(
    arm_name: str,
    seed: int,
    config: Table1Config,
    out: Path,
    data: dict[str, Path],
    device: str,
    benchmark: Any,
) -> dict[str, Any]:
    """Train (or reuse) and score one arm for one seed; writes ``results.json`` and ``DONE``."""
    from cooper_lib.loading import load_trained_folder

    arm = ARMS[arm_name]
    folder = out / f"seed-{seed}" / arm_name
    if (folder / DONE).exists():
        return json.loads((folder / "results.json").read_text())
    base = train_base(config, data, seed, out / f"seed-{seed}" / "base", device)
    tick = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    if arm.model_of is not None:
        final = out / f"seed-{seed}" / arm.model_of / "train" / "sft" / "final"
        if not final.exists():
            final, stage_seconds = train_arm(
                ARMS[arm.model_of], config, data, seed, out / f"seed-{seed}" / arm.model_of, device, base
            )
    else:
        final, stage_seconds = train_arm(arm, config, data, seed, folder, device, base)
    trained = time.perf_counter()
    model = load_trained_folder(final).to(device).eval()
    conditions = {"main": answer(model, benchmark, config, arm.policy, arm.maps)}
    elastic = None
    if arm.perceives:
        for condition in ("other_scene", "true"):
            conditions[condition] = answer(model, benchmark, config, arm.policy, condition)
        elastic = map_elasticity(model, benchmark, config, arm.policy, conditions["true"])
    result = {
        "arm": arm_name,
        "seed": seed,
        "model": str(final),
        "conditions": conditions,
        "map_elasticity": elastic,
        "map_quality": map_quality(model, benchmark, config),
        "wall_seconds": {
            "train": trained - tick,
            "stages": stage_seconds,
            "eval": time.perf_counter() - trained,
            "total": time.perf_counter() - tick,
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result))
    (folder / DONE).write_text("")
    return result


def _stop_with_parent(poll_seconds: float = 1.0) -> None:
    """Start a thread that ends this worker process once its parent has gone (its parent id
    changes: the orphan is adopted), so a run killed with a signal leaves no process training."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="table1-parent-watch", daemon=True).start()


def _base_process(
    seed: int, config: Table1Config, out: Path, data: dict[str, Path], device: str, threads: int
) -> None:
    """`train_base` for `seed` in a process of its own, `threads` CPU threads."""
    import torch

    torch.set_num_threads(threads)
    train_base(config, data, seed, out / f"seed-{seed}" / "base", device)


def _arms_process(
    seed: int,
    names: Sequence[str],
    config: Table1Config,
    out: Path,
    data: dict[str, Path],
    device: str,
    threads: int,
) -> list[dict[str, Any]]:
    """`run_arm` for each of `names` (one arm group) of `seed`, in order, in a process of its own;
    `threads` caps torch's CPU threads so that processes at once do not oversubscribe the cores."""
    import torch

    torch.set_num_threads(threads)
    benchmark = held_out_benchmark(data["test"])
    return [run_arm(name, seed, config, out, data, device, benchmark) for name in names]


def _run_at_once(
    seeds: Sequence[int],
    names: Sequence[str],
    config: Table1Config,
    out: Path,
    data: dict[str, Path],
    device: str,
    jobs: int,
) -> list[dict[str, Any]]:
    """Every seed's base model, then, as each is ready, its arm groups, `jobs` processes at a time.
    A seed that fails is reported after the others have finished (their arms are saved, so a rerun
    resumes at the failed one)."""
    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    groups = arm_groups(names)
    results: dict[tuple[int, str], dict[str, Any]] = {}
    failed: dict[int, BaseException] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_stop_with_parent) as pool:
        pending: dict[Future, tuple[int, list[str] | None]] = {
            pool.submit(_base_process, seed, config, out, data, device, threads): (seed, None)
            for seed in seeds
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                seed, group = pending.pop(future)
                try:
                    finished = future.result()
                except Exception as error:
                    failed.setdefault(seed, error)
                    continue
                if group is None:
                    print(f"table1: seed {seed} base model ready", flush=True)
                    for arms in groups:
                        task = pool.submit(_arms_process, seed, arms, config, out, data, device, threads)
                        pending[task] = (seed, arms)
                    continue
                results.update({(seed, result["arm"]): result for result in finished})
                print(f"table1: seed {seed} {', '.join(group)} done", flush=True)
    if failed:
        seed, error = min(failed.items())
        hint = (
            " (a process died: killed, out of memory, or never started; a script that calls "
            'run_table1 with jobs > 1 must call it under `if __name__ == "__main__":`, as '
            "Python's message above says when that is the cause)"
            if isinstance(error, BrokenProcessPool)
            else ""
        )
        raise RuntimeError(
            f"seed(s) {sorted(failed)} failed, the others' arms are saved in {out} (rerun to resume); "
            f"seed {seed}: {type(error).__name__}: {error}{hint}"
        ) from error
    return [results[(seed, name)] for seed in seeds for name in names]


def report_setup(
    config: Table1Config, out: Path, seeds: Sequence[int], questions: int, device: str, jobs: int
) -> dict[str, str]:
    """The report's set-up lines: backbone, data, budget, device, and the levers a run turned on
    (trace maps, stage-1 maps in SFT, the base model); `questions` is the benchmark's count and the
    base model's wall time is read from ``out``'s seed folders when they hold it."""
    setup = {
        "backbone": f"`{config.backbone}`, heads `{json.dumps(config.spatial)}`, vision tower and LLM trained",
        "data": (
            _training_questions(config)
            + _stage1_data(config)
            + f"{config.grpo_scenes} GRPO scenes; {config.test_scenes} held-out test scenes ({questions} questions)"
        ),
        "budget": (
            f"{config.supervised_steps} supervised steps per arm (stage 1: {config.stage1_steps} + SFT: "
            f"{config.sft_steps}, or SFT alone), batch {config.batch_size}"
            + (f" (stage 1: {config.stage1_batch})" if config.stage1_batch != config.batch_size else "")
            + f", AdamW lr {config.lr} cosine"
            + (
                f", weight decay {config.sft_weight_decay} in the arms' SFT"
                if config.sft_weight_decay
                else ""
            )
            + "; "
            f"GRPO arms add {config.grpo_steps} steps ({config.grpo_batch_size} prompts x {config.num_generations} "
            f"rollouts, lr {config.grpo_lr})"
        ),
        "device": device + (f", {jobs} processes at once (wall times overlap)" if jobs > 1 else ""),
    }
    shown = {
        "own": "the perceiving arms' SFT traces show the maps their own stage-1 model draws of each "
        "photograph, not the true maps",
        "mixed": "half the photographs of the perceiving arms' SFT traces (drawn by the seed) show the "
        "maps their own stage-1 model draws, the rest the true maps",
    }
    if config.trace_maps in shown:
        setup["trace maps"] = shown[config.trace_maps] + " (the heads still learn from the true maps)"
    if config.sft_stage1_maps:
        extra = config.map_scene_count - config.train_scenes
        setup["stage-1 maps in SFT"] = (
            f"the perceiving arms' SFT after stage 1 also draws {extra} map records (the stage-1 scenes "
            "no question asks about: photograph, depth and segmentation calls, the true maps, no text "
            "loss) among its traces: those arms see more map data in SFT than the others"
        )
    if config.base_steps:
        seconds = [
            json.loads(path.read_text())["base"]
            for s in seeds
            if (path := out / f"seed-{s}" / "base" / "seconds.json").exists()
        ]
        setup["base model"] = (
            f"{config.base_steps} caption steps on {config.base_scenes} other training scenes"
            + ("" if config.caption_distances else " (objects named, no distances)")
            + (
                " and as many map captions (the distances read off the scene's true depth map)"
                if config.caption_maps
                else ""
            )
            + (
                f", and {config.base_map_scenes} map readings (one-object scenes' true depth maps "
                "alone, asked the object's distance)"
                if config.base_map_scenes
                else ""
            )
            + ", once per seed, shared by every arm (not in the arms' budget)"
            + (f"; {sum(seconds) / len(seconds):.0f} s a seed" if seconds else "")
        )
    return setup


def run_table1(
    out: str | Path = "table1",
    *,
    seeds: int | Sequence[int] = 3,
    config: Table1Config | None = None,
    arms: Sequence[str] | None = None,
    device: str | None = None,
    jobs: int | None = None,
) -> Path:
    """Run the experiment (resumable) and write ``out/report.md`` and ``out/table1.png``.

    Args:
        out: the experiment folder.
        seeds: a number of seeds (0, 1, ...) or the seeds themselves.
        config: sizes and budget (default `Table1Config()`; `Table1Config.quick()` for a CPU).
        arms: arm names (default all of `ARMS`, in their order).
        device: ``"cpu"`` or ``"cuda"`` (default: cuda when available).
        jobs: processes trained at once (spawned): every seed's base model, then every (seed, arm
            group) in one of its own. Default: one per CPU core. 1 trains everything in this
            process, one arm after another.

    Returns:
        The report's path.
    """
    config = config or Table1Config()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError(f"seeds: expected at least one seed, got {seeds!r}")
    names = list(ARMS) if arms is None else list(arms)
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ValueError(f"arms: expected names from {list(ARMS)}, got unknown {unknown}")
    device = _device(device)
    jobs = _jobs(jobs, len(seed_list) * len(arm_groups(names)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_config(out / "config.json", config)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    data = prepare_data(out, config)
    check_turn_budget(config, data, names)
    benchmark = held_out_benchmark(data["test"])
    if jobs == 1:
        results = [run_arm(n, s, config, out, data, device, benchmark) for s in seed_list for n in names]
    else:
        results = _run_at_once(seed_list, names, config, out, data, device, jobs)
    table_priors = priors(benchmark)
    map_prior = fixed_map_quality(data["stage1"].parent, benchmark, config)
    (out / "results.json").write_text(
        json.dumps({"priors": table_priors, "fixed_map": map_prior, "results": results})
    )
    setup = report_setup(config, out, seed_list, len(benchmark.items), device, jobs)
    report = out / "report.md"
    report.write_text(
        markdown(results, table_priors, {n: ARMS[n] for n in names}, setup, map_prior)
        + "\n![chart](table1.png)\n"
    )
    bar_chart(results, table_priors, out / "table1.png", names)
    return report
