"""`Table1Config`: the experiment's model, data and budget, with the `full`, `quick`, `tokens64`,
`cooper_data` and `micro` presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cooper_lib.serialization import from_dict, to_dict

if TYPE_CHECKING:
    from cooper_lib.data.synthetic.config import SceneConfig

#: Every preset's model: a 2-layer, 128-wide tiny Qwen2-VL whose 64 x 64 images become 16 visual
#: tokens (patch 8, 2 x 2 merge) through a one-block, 64-wide vision tower that trains. Chosen by
#: measurement (benchmarks/RESULTS.md, "Table 1 (synthetic)"): one vision block learned colour
#: questions faster than two or a 128-wide one; a 4-layer LM learned no faster in 1,000 steps at
#: 1.7 times the cost per CPU step (256 wide and 4 layers, tried earlier, cost five times as much).
EXPERIMENT_BACKBONE = (
    "tiny:qwen2_vl?hidden_size=128&num_hidden_layers=2&image_size=64&patch_size=8"
    "&vision_hidden_size=64&vision_layers=1"
)

#: The experiment's questions: two that depth maps answer (relative depth, distance to the
#: camera), one that segmentation answers (counting shapes) and one no map helps (colour).
EXPERIMENT_CATEGORIES = ("colour", "count_shape", "distance_camera", "relative_depth")

#: Answer types asked per category: relative depth as yes/no only. Its choice form is answered
#: with an object's name ("the pink cone"), which the experiment's models trained from scratch
#: miscopied (a colour right, the shape of another object): every arm scored below chance on it.
EXPERIMENT_ANSWER_TYPES: dict[str, tuple[str, ...]] = {"relative_depth": ("yes_no",)}

#: Scenes of every set: at most three objects, 2-5 m away, 0.6-1.2 m in size, so every object
#: covers several of the 16 visual tokens' patches (`SceneConfig()` allows six, up to 9 m away,
#: from 0.3 m: a far small object is a few pixels).
EXPERIMENT_SCENE: dict[str, Any] = {
    "max_objects": 3,
    "placement_distance": (2.0, 5.0),
    "object_size": (0.6, 1.2),
}

#: Metres the experiment's depth maps are drawn over, in the SFT traces and by the reasoner
#: (`SpatialConfig.depth_display_range`), as COOPER draws each data set over its own range. Its
#: objects stand 2-5 m away: over the library's 0-20 m they all fell in the first quarter of the
#: Spectral table (reds and oranges hardly apart from the floor behind them), and another scene's
#: maps cost the perceiving arms nothing on distance; over 0-7 m they span red to green and cost
#: them 4.5 points (three seeds, benchmarks/RESULTS.md).
EXPERIMENT_DEPTH_RANGE: tuple[float, float] = (1e-3, 7.0)

#: Perception heads of every arm (the synthetic world's 7 classes, 16 x 16 maps, depth shown over
#: `EXPERIMENT_DEPTH_RANGE`), read from a 4 x 4 grid of queries seeded with the photo's visual tokens
#: (``query_source="image"``): 2 x 2 or 4 x 4 learned queries drew the training scenes' median map
#: (BAGEL-PE depth AbsRel 0.306, on objects 0.740, three seeds); seeded ones draw the scene (0.220,
#: 0.367), benchmarks/RESULTS.md and benchmarks/query_route.py.
EXPERIMENT_SPATIAL: dict[str, Any] = {
    "modalities": ["depth", "segmentation"],
    "num_classes": 7,
    "query_grid": [4, 4],
    "query_source": "image",
    "output_size": [16, 16],
    "head_width": 32,
    "depth_display_range": list(EXPERIMENT_DEPTH_RANGE),
}


#: The heads of `Table1Config.tokens64`: a query per visual token (8 x 8 on its 64) and the
#: library's decoder width. After the same 1,000 stage-1 steps the objects' depth in their maps
#: (each object's median against the true map's, MRA on held-out scenes) scores 80.9 % where the
#: 4 x 4, 32-wide heads reach 66.0, and 79.1 only after 8,000 steps (benchmarks/RESULTS.md,
#: "Heads with a query per visual token").
EXPERIMENT_SPATIAL_64: dict[str, Any] = {**EXPERIMENT_SPATIAL, "query_grid": [8, 8], "head_width": 128}


#: `Table1Config.trace_maps` values: the maps the perceiving arms' SFT traces show.
TRACE_MAPS = ("true", "own", "mixed")


@dataclass
class Table1Config:
    """What every arm shares: backbone, data, optimiser and budget (stated in the report).

    Attributes:
        backbone: tiny spec (its weights are seeded by the run seed) or a hub id.
        spatial: `add_spatial_heads` keyword arguments.
        train_scenes: scenes of the SFT training sets (train split, data seed 0).
        stage1_scenes: scenes of the stage-1 (AMG) set, the same draw (so its first
            ``train_scenes`` are the SFT scenes); None: ``train_scenes``. COOPER's stage 1 reads
            depth and segmentation data sets far larger than its 6,901 SFT traces; more here
            gives the perceiving arms maps of scenes no question is asked about, which the
            QA-only arm does not see (stated in the report).
        grpo_scenes: scenes of the GRPO question set (train split, data seed 1).
        test_scenes: held-out scenes of the benchmark (test split). The default 650 ask about
            1,000 distance and relative-depth questions: on 300 an arm's distance score moved
            from seed to seed about twice as much as on 1,200 (benchmarks/RESULTS.md).
        questions_per_scene: questions asked per scene (training and test; ``train_per_category``
            asks more of the training scenes).
        train_per_category: questions drawn per category on each training scene of the SFT sets
            (QA-only's and the perceiving arms' alike; `make_qa`'s ``per_category``), up to
            ``questions_per_scene`` times this a scene; the GRPO and test sets keep one. More
            questions on the same scenes: e.g. 3 asks the distance of each object a scene
            holds instead of one. At 3 on 250 question scenes (`cooper_data`) QA-only gained
            little on distance (+0.3 / +1.5 points), COOPER read its maps a little more (another
            scene's cost it 4.0 / 3.1 against 2.2 / 2.4) and answered no better (benchmarks/
            RESULTS.md, "Three questions a category"). Default 1.
        base_scenes: scenes of the caption set (train split, data seed 2) the shared base model
            is pretrained on.
        base_steps: caption steps of the base model every arm starts from (0: start from the
            backbone's random weights). The analogue of the pretraining every COOPER arm inherits
            from BAGEL: it teaches the backbone to name what it sees, once per seed, and is not
            part of any arm's budget.
        caption_distances: the base model's captions state each object's distance in metres
            (``"red sphere 2.4 m; blue box 3.1 m"``); off, they name the objects nearest first
            and stop there (``"red sphere; blue box"``), so no arm starts out reading metres off
            the photograph, a skill COOPER's premise is that base MLLMs lack.
        caption_maps: the base model also reads depth maps: per caption scene, a second record
            shows the photograph, then the scene's true depth map where an interleaved trace shows
            a tool's map, and names the objects with their distances
            (`cooper_lib.data.synthetic.captions.map_caption_record`). With ``caption_distances``
            off, metres are stated only where a depth map is shown; the photograph is shown too,
            and the base reads its metres mostly off it (true map 78.0 against another scene's
            73.8, benchmarks/RESULTS.md). The base is every arm's, QA-only's too.
        base_map_scenes: one-object scenes (train split, data seed 3) whose true depth map alone,
            shown after a depth call as a COOPER trace shows it but with no photograph, the base
            model is asked the object's distance of, beside its captions
            (`cooper_lib.experiments.table1.data.write_map_reading`; 0: none). It teaches reading
            metres off a depth map with no object to find and no photograph to read them off
            instead: one reader trained so for 1,000 steps scored 90.8 % on held-out one-object
            maps, and 77.1 given the photograph (benchmarks/RESULTS.md). Every arm's base, QA-only's too.
            On the ``cooper_data`` preset with 250 question scenes COOPER's reader does not read
            its maps with it, ``caption_distances`` on (one seed) or off (two seeds): another
            scene's maps score as its own; on the preset's 1,000 it reads them as without it
            (another scene's cost 3.3 / 7.2 points against 6.1 / 7.1, benchmarks/RESULTS.md).
        trace_maps: the maps the perceiving arms' SFT traces show (BAGEL-PE's and COOPER's):
            ``"true"``, the scene's true map, or ``"own"``, the one the arm's stage-1 model draws
            of the photograph (`cooper_lib.experiments.table1.data.write_own_maps`), as its GRPO
            rollouts and its evaluation show it its own maps. The heads learn from the true map
            either way. With true maps a reader learns to trust a map no head draws: one trained on
            4,000 distance traces read true maps at 79.1 % and its own at 66.7, below the
            photograph's 69.6. Shown its own maps instead it learns to read the photograph (its
            own maps 70.6 / 70.3 %, another scene's 69.3 / 71.9, seeds 0 / 1; benchmarks/RESULTS.md).
            ``"mixed"``: half the photographs (drawn by the seed) show their own maps, the rest the
            true ones; on four seeds it answered as with true maps and leaned on its maps less
            (another scene's cost 4.0 against 6.3 points; benchmarks/RESULTS.md).
        sft_stage1_maps: the perceiving arms' SFT after a stage 1 (BAGEL-PE's and COOPER's) also
            learns the maps of the stage-1 scenes no question asks about (those past
            ``train_scenes``; needs ``stage1_scenes`` larger and `supervise_maps` on): a record per
            scene, its photograph, a depth call and the true map, a segmentation call and the true
            map, with no text loss (`cooper_lib.experiments.table1.data.write_map_records`),
            drawn among the traces. It keeps the heads on the stage-1 scenes while SFT moves the
            states they read: on 1,000 question scenes the maps came out of SFT blurrier than on
            4,000 (objects' distance read off them 73.5 against 77.2 %, benchmarks/RESULTS.md).
            Those arms then see more map data in SFT than the others, as COOPER's recipe does, and
            their traces are a smaller share of each batch (the report's set-up says so). On 1,000
            question scenes it drew the sharpest maps yet (mIoU 0.91 against 0.76, objects' distance
            read off them 77.3 / 78.2 %) and COOPER answered distance no better (-0.6 / -0.3 points
            against QA-only; "Sharper maps, or the reader's own").
        stage1_steps: AMG steps; arms without stage 1 spend them on SFT, so every arm takes
            ``stage1_steps + sft_steps`` supervised steps.
        stage1_llm: the language model in stage 1: ``"full"`` (trained with the heads) or
            ``"frozen"`` (only the vision tower, the queries, the heads and the added tokens' rows
            train; ``"lora"`` adapts it). BAGEL's stage 1 sends the map tokens through a generation
            expert of its own, so the understanding path a question is read by changes little;
            here only the queries and heads can play that expert, and a language model trained
            whole forgets its captions (loss 0.32 -> 3.34 after 1,000 steps, 0.58 with it frozen;
            maps' object depth 81.9 and 80.4 %). SFT repairs that in its first hundred steps:
            COOPER answered the same either way (benchmarks/RESULTS.md).
        sft_steps: SFT steps after stage 1.
        grpo_steps: GRPO steps of the GRPO arms (BAGEL-RE and COOPER), on top of the above.
        batch_size: records per supervised step.
        stage1_batch_size: records per stage-1 (AMG) step; None (default) is ``batch_size``. The
            budget counts steps, so a larger stage-1 batch gives the heads more samples in the same
            steps (the report's budget line says so): 1,000 steps of 128 drew objects' depth at
            84.2 % against 80.9 with 16 (benchmarks/RESULTS.md, "Heads with a query per visual
            token"), though COOPER answered no better for it ("A stage 1 of batch 128"). On a GPU,
            where a step of this model is host-bound, it costs little time.
        lr: peak learning rate of the supervised stages (cosine, 10 % warm-up).
        sft_weight_decay: AdamW's decoupled weight decay in the arms' SFT (QA-only's and the
            traces'; not the base model, stage 1 or GRPO, which take none), a regulariser for
            questions too few to train on for long: on 500 question scenes both arms drive their
            text loss to 0.000 by step 5,000-5,500 of 6,000-7,000 and answer distance below the best
            fixed answer. At 1.0 it held the loss up and helped QA-only (+2.6 / +0.6 points on
            distance) more than COOPER (+1.2 / -0.1), whose lead fell to +0.1 / +0.3 and which
            followed its maps a third as much; 0.1 changed little (benchmarks/RESULTS.md, "Weight
            decay against the memorised questions"). Default 0.
        grpo_lr: GRPO's learning rate.
        grpo_batch_size: GRPO's prompts per step.
        num_generations: GRPO's rollouts per prompt.
        tool_ratio: share of the questions a map helps whose interleaved SFT trace calls its tool
            (the others are answered in text; colour questions, which no map helps, always are).
            Default 1.0, every such trace: which of them go without is drawn at random, so a
            lower ratio teaches no decision, only answers without the map. At 0.75 (the default
            before 2026-12-06) another scene's maps cost COOPER 6.0 / 6.0 points on distance;
            at 1.0, on the same stage 1, 12.2 / 11.5, and 11.0 ± 0.7 over four seeds with a
            heavier map loss (benchmarks/RESULTS.md, "Every trace a map").
        max_new_tokens: per-turn token budget at evaluation and in GRPO rollouts; it must hold
            the longest trained turn (an interleaved tool-call turn is up to about 110 tokens of
            the tiny tokenizer with `tool_reasoning`, 46 without; `run_table1` refuses,
            before training, a budget that would cut one).
        eval_batch_size: questions per reasoner batch at evaluation.
        map_scenes: test scenes whose generated maps are scored (AbsRel, delta1, mIoU).
        dtype: backbone dtype (float32 on CPU; bfloat16 suits a GPU).
        categories: the question categories asked in training and test (default
            `EXPERIMENT_CATEGORIES`; None asks all 15 of `cooper_lib.data.synthetic.CATEGORIES`).
        scene: `SceneConfig` overrides of every set's scenes (default: the experiment's
            `EXPERIMENT_SCENE`, fewer, nearer and larger objects than `SceneConfig()`).
        answer_types: per category, the answer types asked (`make_qa`; default
            `EXPERIMENT_ANSWER_TYPES`: relative depth as yes/no only; empty asks every form).
        answer_style: `write_dataset`'s answer style: "short_text" (default; choice questions
            answered with the option's text, which a model trained from scratch learns where it
            does not learn the letter, benchmarks/RESULTS.md) or "short" (COOPER's letters).
        system_prompt: give every record and the reasoner COOPER's system prompt. Off by default:
            it is about 900 of the tiny tokenizer's tokens against about 80 for the rest of a
            direct-answer record, the same for every record, so it tells a model trained from
            scratch nothing and makes each step about ten times slower.
        reflection_prompt: put COOPER's reflection prompt after every map of the SFT traces and
            the reasoner. Off by default (an empty text follows each map): it is 214 of the tiny
            tokenizer's tokens, the same after every map, 428 of a perceive-first trace's 571;
            without it a perceive-first SFT step took 2.3 times less and the held-out answers
            were as good (34.7 against 35.3 %, benchmarks/RESULTS.md).
        supervise_maps: also train the heads on the true maps the SFT traces show (`SFTConfig`'s
            option), with `map_loss_weight`. On by default: without it the heads are frozen in
            effect while SFT moves the states they read, and undo stage 1 (BAGEL-PE's depth
            AbsRel 0.51 after 2,000 supervised steps against 0.26 with it, the answers as good:
            58.7 against 58.9 %; benchmarks/RESULTS.md). Off, SFT trains the flagged text only,
            as COOPER's does.
        map_loss_weight: weight of each head's loss in SFT when `supervise_maps` is on (the
            answers' loss has weight 1). Default 0.05: at weight 1 the map loss (about 1.5
            against about 0.1 for the answers) held a perceive-first model's held-out answers
            at the prior (20.6 against 35.3 % without it; colour 17.3 against 72.8 %).
        tool_reasoning: keep the synthetic traces' one-sentence reason before each tool call
            (one of three phrasings per map, e.g. "A depth map tells me how far each object is
            from the camera; let me generate it."). Off by default (``<think></think>``, then
            the call): the sentence says nothing a question does not, and at this size its
            tokens outweighed the answer's: interleaved SFT reached 19.7 % held out with it and
            28.4 % without (colour 35.8 against 72.8 %; benchmarks/RESULTS.md). Only those
            template sentences are dropped: a thought of other text in the records is kept.
    """

    backbone: str = EXPERIMENT_BACKBONE
    spatial: dict[str, Any] = field(default_factory=lambda: dict(EXPERIMENT_SPATIAL))
    train_scenes: int = 1000
    stage1_scenes: int | None = None
    grpo_scenes: int = 32
    test_scenes: int = 650
    questions_per_scene: int = 4
    train_per_category: int = 1
    base_scenes: int = 1500
    base_steps: int = 1500
    caption_distances: bool = True
    caption_maps: bool = False
    base_map_scenes: int = 0
    trace_maps: str = "true"
    sft_stage1_maps: bool = False
    stage1_steps: int = 150
    stage1_llm: str = "full"
    sft_steps: int = 850
    grpo_steps: int = 10
    batch_size: int = 16
    stage1_batch_size: int | None = None
    lr: float = 1e-3
    sft_weight_decay: float = 0.0
    grpo_lr: float = 1e-5
    grpo_batch_size: int = 2
    num_generations: int = 4
    tool_ratio: float = 1.0
    max_new_tokens: int = 128
    eval_batch_size: int = 60
    map_scenes: int = 16
    dtype: str = "float32"
    categories: tuple[str, ...] | None = EXPERIMENT_CATEGORIES
    scene: dict[str, Any] = field(default_factory=lambda: dict(EXPERIMENT_SCENE))
    answer_types: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(EXPERIMENT_ANSWER_TYPES))
    answer_style: str = "short_text"
    system_prompt: bool = False
    reflection_prompt: bool = False
    supervise_maps: bool = True
    map_loss_weight: float = 0.05
    tool_reasoning: bool = False

    def __post_init__(self) -> None:
        from cooper_lib.data.synthetic import CATEGORIES
        from cooper_lib.data.synthetic.qa import check_answer_types
        from cooper_lib.training.config import LLM_MODES

        if self.categories is not None:
            self.categories = tuple(self.categories)
            unknown = [c for c in self.categories if c not in CATEGORIES]
            if unknown or not self.categories:
                raise ValueError(
                    f"categories: expected a non-empty list from {list(CATEGORIES)}, got {list(self.categories)}"
                )
        for name in (
            "train_scenes",
            "grpo_scenes",
            "test_scenes",
            "questions_per_scene",
            "train_per_category",
            "sft_steps",
            "batch_size",
            "grpo_batch_size",
            "max_new_tokens",
            "eval_batch_size",
            "map_scenes",
            "base_scenes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("stage1_scenes", "stage1_batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: expected a positive int or None, got {value!r}")
        for name in ("base_steps", "stage1_steps", "grpo_steps", "base_map_scenes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if self.stage1_llm not in LLM_MODES:
            raise ValueError(f"stage1_llm: expected one of {list(LLM_MODES)}, got {self.stage1_llm!r}")
        if self.trace_maps not in TRACE_MAPS:
            raise ValueError(f"trace_maps: expected one of {list(TRACE_MAPS)}, got {self.trace_maps!r}")
        if self.sft_stage1_maps and not (self.supervise_maps and self.map_scene_count > self.train_scenes):
            raise ValueError(
                "sft_stage1_maps: expected stage1_scenes above train_scenes and supervise_maps on (the "
                f"records teach the heads on the stage-1 scenes no question asks about); got stage1_scenes "
                f"{self.stage1_scenes}, train_scenes {self.train_scenes}, supervise_maps {self.supervise_maps}"
            )
        if self.answer_style not in ("short", "short_text"):
            raise ValueError(f"answer_style: expected 'short' or 'short_text', got {self.answer_style!r}")
        if not isinstance(self.scene, dict):
            raise ValueError(f"scene: expected a dict of SceneConfig fields, got {self.scene!r}")
        # a run's config.json gives the tuples of SceneConfig's ranges back as lists
        self.scene = {k: tuple(v) if isinstance(v, list) else v for k, v in self.scene.items()}
        self.scene_config()
        self.answer_types = check_answer_types(self.answer_types)
        if isinstance(self.sft_weight_decay, bool) or not (
            isinstance(self.sft_weight_decay, (int, float)) and self.sft_weight_decay >= 0
        ):
            raise ValueError(
                f"sft_weight_decay: expected a non-negative float, got {self.sft_weight_decay!r}"
            )
        if not self.map_loss_weight > 0:
            raise ValueError(f"map_loss_weight: expected a positive weight, got {self.map_loss_weight}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations: expected at least 2, got {self.num_generations}")
        if not 0.0 <= self.tool_ratio <= 1.0:
            raise ValueError(f"tool_ratio: expected a value in [0, 1], got {self.tool_ratio}")
        if self.lr <= 0 or self.grpo_lr <= 0:
            raise ValueError(f"lr, grpo_lr: expected positive rates, got {self.lr}, {self.grpo_lr}")

    def scene_config(self) -> SceneConfig:
        """The `SceneConfig` every set is rendered with (`scene` applied to the defaults)."""
        from cooper_lib.data.synthetic.config import SceneConfig

        try:
            return SceneConfig(**self.scene)
        except TypeError as error:
            raise ValueError(
                f"scene: expected SceneConfig fields, got {sorted(self.scene)} ({error})"
            ) from None

    def reasoner_prompts(self) -> dict[str, Any]:
        """`InterleavedReasoner` prompt arguments matching the SFT records: no system prompt and
        an empty reflection text unless `system_prompt` / `reflection_prompt` are on."""
        prompts: dict[str, Any] = {}
        if not self.system_prompt:
            prompts["system_prompt"] = None
        if not self.reflection_prompt:
            prompts["reflection_prompt"] = ""
        return prompts

    @property
    def depth_display_range(self) -> tuple[float, float]:
        """Metres depth maps are drawn over: ``spatial["depth_display_range"]``, else the library's
        `DISPLAY_RANGE`. The SFT traces, the reasoner and the map conditions all use it."""
        from cooper_lib.modalities.depth import DISPLAY_RANGE

        near, far = self.spatial.get("depth_display_range") or DISPLAY_RANGE
        return float(near), float(far)

    @property
    def map_scene_count(self) -> int:
        """Scenes of the stage-1 set: ``stage1_scenes``, else ``train_scenes``."""
        return self.train_scenes if self.stage1_scenes is None else self.stage1_scenes

    @property
    def stage1_batch(self) -> int:
        """Records per stage-1 step: ``stage1_batch_size``, else ``batch_size``."""
        return self.batch_size if self.stage1_batch_size is None else self.stage1_batch_size

    @property
    def supervised_steps(self) -> int:
        """Supervised optimiser steps every arm takes (stage 1 + SFT, or SFT alone)."""
        return self.stage1_steps + self.sft_steps

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-ready values (what a run writes to ``OUT/config.json``)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Table1Config:
        """The config `to_dict` wrote (a run's ``OUT/config.json``), or a subset of its fields over
        the defaults; an unknown field or a value of the wrong type is refused, named."""
        return from_dict(cls, data)

    @classmethod
    def quick(cls) -> Table1Config:
        """One seed's small run: the full recipe with 50 + 250 supervised steps, 4 GRPO steps and
        60 test scenes, measured at 4 min 19 s to 6 min 25 s on an idle 2-core CPU, 9 min 52 s on a
        2-core VM half as fast (docs/experiment-table1.md)."""
        return cls(test_scenes=60, stage1_steps=50, sft_steps=250, grpo_steps=4)

    @classmethod
    def full(cls) -> Table1Config:
        """The default (three-seed) run: 150 + 850 supervised steps per arm, 10 GRPO steps, 650
        test scenes: 1,009 distance and relative-depth questions, about the thousand one arm's
        depth scores need (the first pilot's 135 left a standard error of about 4 points; 150
        scenes, the default until 2026-12-06, asked 225). Three seeds took 35 min 12 s on the
        2-core CPU with 150 test scenes (one base model reused); evaluating 650 takes the six arms
        of a seed 291 s (two processes, 3 min 3 s of wall with the test set written; 30 s for 60
        scenes). On one H200, a process per (seed, arm group) (`run_table1`'s ``jobs``), the
        training is estimated at about 6 minutes from the step rates measured there
        (docs/experiment-table1.md; the whole run not measured)."""
        return cls()

    @classmethod
    def tokens64(cls) -> Table1Config:
        """The recipe of benchmarks/RESULTS.md's levers since 2026-12-05: 64 visual tokens an image
        (`EXPERIMENT_BACKBONE` with ``patch_size=4``) carrying BAGEL's 2-D sin-cos positions
        (``visual_positions=sincos``) and heads with a query per visual token
        (`EXPERIMENT_SPATIAL_64`), 1,000 + 3,000 supervised steps, 1,200 test scenes (64 of them
        for the map scores). The one on which QA-only reads distance off the photograph above the
        best fixed answer (with 16 tokens it does not). 1,200 test scenes ask 1,200 distance and
        676 relative-depth questions; the levers before 2026-12-06 were scored on the first 300,
        on which an arm's distance score moved from seed to seed about twice as much (QA-only's sd
        3.3 points over four seeds against 1.9 on the 1,200, COOPER's 1.1 against 0.4;
        benchmarks/RESULTS.md). 42-61 minutes an arm on the 2-core CPU, four processes at once,
        and 2-5 minutes more of evaluation (docs/experiment-table1.md); made for ``--device
        cuda``."""
        backbone = EXPERIMENT_BACKBONE.replace("patch_size=8", "patch_size=4") + "&visual_positions=sincos"
        return cls(
            backbone=backbone,
            spatial=dict(EXPERIMENT_SPATIAL_64),
            stage1_steps=1000,
            sft_steps=3000,
            test_scenes=1200,
            map_scenes=64,
        )

    @classmethod
    def cooper_data(cls) -> Table1Config:
        """`tokens64` on COOPER's shape of data, with the settings that make COOPER read its maps
        (benchmarks/RESULTS.md, "COOPER's data on the maps-read recipe"): questions on 1,000
        scenes, stage 1 on the maps of 4,000 (those and 3,000 no question asks about), 1,000
        stage-1 steps of batch 128 with the language model frozen, 6,000 SFT steps of batch 16
        with the maps' loss at 0.25 (QA-only: 7,000), a map in every trace a map helps. Measured
        on four seeds (1,200 distance questions each): COOPER +0.6 ± 1.7 points over QA-only on
        distance, another scene's maps cost it 6.3 ± 2.4, true maps put it 5.8 ± 2.0 above
        QA-only; with questions on 500 scenes (``train_scenes=500``) +2.0 ± 1.3, both arms below
        the best fixed answer. Fewer question scenes widen the lead down to 250 (+2.8 / +5.1,
        two seeds; +2.2 / +1.1 on 125) and cut the reading: another scene's maps cost 4.2 ± 2.0 on
        500, 2.3 on 250, 1.5 on 125 (RESULTS.md, "An eighth of the question scenes"). On the 2-core
        CPU, four processes at once: stage 1 2,133-2,154 s,
        COOPER's SFT 4,166-4,706 s, its evaluation 629-691 s (2026-12-06/07)."""
        return cls.tokens64().with_(
            train_scenes=1000,
            stage1_scenes=4000,
            stage1_llm="frozen",
            stage1_steps=1000,
            stage1_batch_size=128,
            sft_steps=6000,
            map_loss_weight=0.25,
        )

    @classmethod
    def micro(cls) -> Table1Config:
        """A seconds-long run for tests: 1 step a stage, 4 scenes, a 1-layer 32-wide backbone."""
        return cls(
            backbone="tiny:qwen2_vl?hidden_size=32&num_hidden_layers=1",
            train_scenes=4,
            base_scenes=2,
            base_steps=1,
            grpo_scenes=2,
            test_scenes=3,
            questions_per_scene=2,
            stage1_steps=1,
            sft_steps=1,
            grpo_steps=1,
            batch_size=2,
            grpo_batch_size=1,
            num_generations=2,
            max_new_tokens=128,
            eval_batch_size=8,
            map_scenes=2,
        )

    def with_(self, **changes: Any) -> Table1Config:
        """A copy with `changes` applied (and validated)."""
        return replace(self, **changes)
