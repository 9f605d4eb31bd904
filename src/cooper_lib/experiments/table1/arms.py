"""The six arms of the experiment and how each is trained, stage by stage, from the shared data.

| arm | COOPER analogue | training | answered with |
| --- | --- | --- | --- |
| ``qa_only`` | the base model's fine-tune | SFT on direct answers | text only |
| ``amg_qa`` | COOPER-AMG | stage 1, then SFT on direct answers | text only |
| ``bagel_re`` | BAGEL-RE | SFT on direct answers, then GRPO without tools | text only |
| ``bagel_pe`` | BAGEL-PE | stage 1, then SFT on depth-then-segmentation traces | perceive first |
| ``cooper`` | COOPER | stage 1, then interleaved SFT, then GRPO with the CPR reward | adaptive |
| ``true_maps`` | upper bound | the ``bagel_pe`` model | perceive first, true maps shown |

Arms without stage 1 spend its steps on SFT, so every arm takes the same supervised budget. Every
arm starts from the same base model of its seed (`train_base`: ``base_steps`` of scene captioning,
trained once per seed), as every arm of COOPER's Table 1 starts from BAGEL. With
``Table1Config.trace_maps`` ``"own"`` the perceiving arms' traces show the maps their stage-1
model draws instead of the true ones, with ``"mixed"`` half of them (`_sft_data`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cooper_lib.training.config as training_config
from cooper_lib.config import SpatialConfig
from cooper_lib.data.records import read_jsonl
from cooper_lib.experiments.table1.config import Table1Config
from cooper_lib.experiments.table1.data import write_own_maps
from cooper_lib.loading import TRAINABLE_NAME
from cooper_lib.reasoning.policy import get_policy
from cooper_lib.training.grpo import SpatialGRPOTrainer
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.stage1 import Stage1Trainer
from cooper_lib.training.weights import build_model, seeded_backbone


@dataclass(frozen=True)
class Arm:
    """One arm: its training recipe and how it answers.

    Attributes:
        name: folder and table key.
        label: what the arm is, for the report.
        analogue: its row in COOPER's Table 1.
        stage1: train AMG first.
        sft: the SFT set: ``"qa"`` (direct answers), ``"perceive_first"`` or ``"interleaved"``.
        grpo: finish with GRPO (CPR reward); ``policy`` is the rollouts' policy.
        policy: the reasoner's policy at evaluation (and in GRPO rollouts).
        maps: ``"generated"``, or ``"true"`` (every map shown is the true one).
        model_of: another arm whose trained model this arm evaluates (None: its own).
    """

    name: str
    label: str
    analogue: str
    stage1: bool = False
    sft: str = "qa"
    grpo: bool = False
    policy: str = "text_only"
    maps: str = "generated"
    model_of: str | None = None

    @property
    def perceives(self) -> bool:
        """Whether the arm's answers go through generated maps (the perception-use probes apply)."""
        return self.policy != "text_only" and self.maps == "generated"


ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm("qa_only", "QA-only SFT, direct answers", "base model fine-tune"),
        Arm("amg_qa", "AMG (stage 1), then QA SFT", "COOPER-AMG", stage1=True),
        Arm("bagel_re", "text-only SFT + GRPO", "BAGEL-RE", grpo=True),
        Arm(
            "bagel_pe",
            "AMG + fixed depth, segmentation, answer",
            "BAGEL-PE",
            stage1=True,
            sft="perceive_first",
            policy="perceive_first",
        ),
        Arm(
            "cooper",
            "AMG + interleaved SFT + GRPO (CPR)",
            "COOPER",
            stage1=True,
            sft="interleaved",
            grpo=True,
            policy="adaptive",
        ),
        Arm(
            "true_maps",
            "true maps given as input",
            "upper bound",
            policy="perceive_first",
            maps="true",
            model_of="bagel_pe",
        ),
    )
}


def _sections(
    config: Table1Config, seed: int, steps: int, out: Path, device: str, lr: float, weight_decay: float = 0.0
) -> dict:
    """The model / optim / run sections every stage shares."""
    return {
        "optim": training_config.OptimConfig(
            lr=lr, scheduler="cosine", warmup_steps=max(1, steps // 10), weight_decay=weight_decay
        ),
        "run": training_config.RunConfig(
            output_dir=str(out),
            seed=seed,
            max_steps=steps,
            batch_size=config.batch_size,
            cpu=device == "cpu",
            ema_decay=None,
            save_every=0,
            keep_checkpoints=1,
            log_every=max(1, steps // 5),
            progress_bar=False,
        ),
    }


def _model_config(
    config: Table1Config, seed: int, init_from: Path | None, map_weight: float | None = None
) -> training_config.ModelConfig:
    """The stage's model section. `map_weight` weights every head's loss in this stage (stage 1:
    1, SFT: ``map_loss_weight``); a loaded model takes it as a stage setting
    (`cooper_lib.training.weights.STAGE_SETTINGS`), since a saved model carries its own into the
    next stage. None keeps what the model has."""
    spatial = dict(config.spatial)
    if map_weight is not None:
        modalities = spatial.get("modalities", SpatialConfig().modalities)
        spatial["aux_loss_weights"] = {name: map_weight for name in modalities}
    model = training_config.ModelConfig(
        backbone=config.backbone,
        dtype=config.dtype,
        spatial=spatial,
        llm="full",
        freeze_vision=False,
        init_from=str(init_from) if init_from is not None else None,
    )
    model.backbone = seeded_backbone(model, seed)
    return model


def _sft_trainer(
    config: Table1Config,
    seed: int,
    steps: int,
    out: Path,
    device: str,
    data: Sequence[Path],
    init_from: Path | None,
    weight_decay: float = 0.0,
) -> InterleavedSFTTrainer:
    """An SFT stage of `steps` on the records of the `data` files, from `init_from` (None: the
    seeded backbone), the heads' losses at ``map_loss_weight``, AdamW's `weight_decay`."""
    model_config = _model_config(config, seed, init_from, config.map_loss_weight)
    cfg = training_config.SFTConfig(
        model=model_config,
        data=[str(path) for path in data],
        system_prompt=None if config.system_prompt else "",
        supervise_maps=config.supervise_maps,
        **_sections(config, seed, steps, out, device, config.lr, weight_decay),
    )
    return InterleavedSFTTrainer(build_model(model_config), cfg)


def check_turn_budget(config: Table1Config, data: dict[str, Path], arm_names: Sequence[str]) -> None:
    """Refuse, before anything trains, a ``max_new_tokens`` shorter than the longest turn the
    arms' SFT sets teach: evaluation and GRPO rollouts would cut it (a tool call begun but never
    written). Tokens are counted with the backbone's own tokenizer."""
    sets = sorted({ARMS[ARMS[name].model_of or name].sft for name in arm_names})
    tokenizer = _tokenizer(config.backbone)
    for name in sets:
        longest = longest_trained_turn(data[name], tokenizer)
        if longest > config.max_new_tokens:
            raise ValueError(
                f"max_new_tokens: {config.max_new_tokens} tokens a turn would cut the longest trained "
                f"turn of {data[name]} ({longest} tokens) at evaluation and in GRPO rollouts (a tool "
                "call begun but never written); raise it"
            )


def _tokenizer(backbone: str) -> Any:
    """The backbone's text tokenizer, without loading a hub model's weights."""
    from cooper_lib.backbones.base import BackboneAdapter
    from cooper_lib.backbones.tiny import TINY_PREFIX, build_from_spec

    if backbone.startswith(TINY_PREFIX):
        processor = build_from_spec(backbone)[1]
    else:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(backbone)
    return BackboneAdapter.tokenizer(processor)


def longest_trained_turn(path: Path, tokenizer: Any) -> int:
    """Tokens of the longest loss-bearing assistant text among the SFT records in `path`: the
    turns a model trained on them generates (BAGEL-PE's calls carry no loss: its policy writes them)."""
    texts = {
        item["value"]
        for row in read_jsonl(path)
        for item in row["items"]
        if item.get("role") == "assistant" and item.get("need_loss") and item.get("type", "text") == "text"
    }
    return max(
        (len(ids) for ids in tokenizer(sorted(texts), add_special_tokens=False)["input_ids"]), default=0
    )


def train_base(
    config: Table1Config, data: dict[str, Path], seed: int, folder: Path, device: str
) -> Path | None:
    """The base model of `seed` every arm starts from: ``base_steps`` of SFT on the caption set
    (and the map readings, ``base_maps``, when written),
    trained under ``folder`` once (a later call finds ``folder / "final"`` and returns it; the wall
    seconds are kept in ``folder / "seconds.json"``). None when ``base_steps`` is 0."""
    from accelerate.utils import set_seed

    if not config.base_steps:
        return None
    folder = Path(folder)
    final = folder / "final"
    if not (final / TRAINABLE_NAME).exists():
        tick = time.perf_counter()
        set_seed(seed)
        sets = [data[name] for name in ("base", "base_maps") if name in data]
        trainer = _sft_trainer(config, seed, config.base_steps, folder, device, sets, None)
        final = trainer.train().final_dir
        (folder / "seconds.json").write_text(json.dumps({"base": time.perf_counter() - tick}))
    return final


def _sft_data(
    arm: Arm, config: Table1Config, data: dict[str, Path], seed: int, model: Path | None, device: str
) -> list[Path]:
    """The SFT sets of `arm`: its set as written, beside it the stage-1 scenes' map records
    (``stage1_maps``) when the arm perceives after a stage 1 and ``sft_stage1_maps`` is on; with
    ``trace_maps`` ``"own"`` (``"mixed"``: half the photographs), for such an arm, each with the
    maps its stage-1 `model` draws (`write_own_maps`)."""
    ran_stage1 = bool(arm.stage1 and config.stage1_steps and model is not None)
    if arm.sft == "qa" or not ran_stage1:
        return [data[arm.sft]]
    sets = [data[arm.sft]] + ([data["stage1_maps"]] if config.sft_stage1_maps else [])
    if config.trace_maps == "true":
        return sets
    from cooper_lib.loading import load_trained_folder

    stage1 = load_trained_folder(model).to(device).eval()
    share = 0.5 if config.trace_maps == "mixed" else 1.0
    name = f"{config.trace_maps}-seed-{seed}-{arm.name}"
    return [write_own_maps(stage1, path, name, share=share, seed=seed) for path in sets]


def train_arm(
    arm: Arm,
    config: Table1Config,
    data: dict[str, Path],
    seed: int,
    folder: Path,
    device: str,
    base: Path | None = None,
) -> tuple[Path, dict[str, float]]:
    """Train `arm` for `seed` under ``folder / "train"``, starting from the `base` model folder
    (None: the seeded backbone); returns its final model folder and the wall seconds of each stage.
    A stage whose final folder exists is not run again (resume)."""
    from accelerate.utils import set_seed

    train = Path(folder) / "train"
    seconds: dict[str, float] = {}
    current: Path | None = base
    sft_steps = config.sft_steps if arm.stage1 else config.supervised_steps
    stages: list[tuple[str, int]] = (
        [("stage1", config.stage1_steps)] if arm.stage1 and config.stage1_steps else []
    )
    stages.append(("sft", sft_steps))
    if arm.grpo and config.grpo_steps:
        stages.append(("grpo", config.grpo_steps))
    for stage, steps in stages:
        out = train / stage
        final = out / "final"
        if not (final / TRAINABLE_NAME).exists():
            tick = time.perf_counter()
            set_seed(seed)
            if stage == "stage1":
                model_config = _model_config(config, seed, current, 1.0)
                model_config.llm = config.stage1_llm
                cfg = training_config.Stage1Config(
                    model=model_config,
                    data=[str(data["stage1"])],
                    **_sections(config, seed, steps, out, device, config.lr),
                )
                cfg.run.batch_size = config.stage1_batch
                trainer = Stage1Trainer(build_model(model_config), cfg)
            elif stage == "sft":
                trainer = _sft_trainer(
                    config,
                    seed,
                    steps,
                    out,
                    device,
                    _sft_data(arm, config, data, seed, current, device),
                    current,
                    config.sft_weight_decay,
                )
            else:
                model_config = _model_config(config, seed, current)
                sections = _sections(config, seed, steps, out, device, config.grpo_lr)
                sections["run"].batch_size = config.grpo_batch_size
                cfg = training_config.GRPOConfig(
                    model=model_config,
                    data=[str(data["grpo"])],
                    num_generations=config.num_generations,
                    max_new_tokens=config.max_new_tokens,
                    **sections,
                )
                trainer = SpatialGRPOTrainer(build_model(model_config), cfg)
                # the rollouts follow the arm's policy (BAGEL-RE never calls a tool)
                # and send the prompts the SFT records carried (by default none)
                for reasoner in (trainer.reasoner, trainer.greedy):
                    reasoner.policy = get_policy(arm.policy)
                    for name, value in config.reasoner_prompts().items():
                        setattr(reasoner, name, value)
            final = trainer.train().final_dir
            seconds[stage] = time.perf_counter() - tick
        current = final
    return current, seconds
