"""`InterleavedSFTTrainer`: stage 2a, supervised fine-tuning on interleaved reasoning traces.

Records are COOPER's SFT rows (or cooper-lib `SFTRecord`s); the LM loss covers exactly the text
items marked `need_loss`, and tool calls whose result map carries its true map also train the
head of that modality (see `cooper_lib.training.collators.SFTCollator`), or for a `CooperModel`
the map's latent by flow matching (`cooper_lib.training.cooper_data.CooperSFTCollator`). Records are visited in
a fresh shuffled order every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cooper_lib.data.records import SFTRecord, load_sft_records
from cooper_lib.model import SpatialModel
from cooper_lib.models.cooper import CooperModel
from cooper_lib.training.config import SFTConfig
from cooper_lib.training.kinds import ModelKind, model_kind
from cooper_lib.training.loop import EvalHook, trainer_inputs
from cooper_lib.training.supervised import SupervisedTrainer
from cooper_lib.training.tracking import Sample, sft_prompt, trace_sample


class InterleavedSFTTrainer(SupervisedTrainer):
    """Fine-tune a `SpatialModel` or a `CooperModel` on interleaved traces.

    Args:
        model: the `SpatialModel` (usually the stage-1 model: ``model.init_from``) or the
            `CooperModel` (the stage-1 ``final/`` folder: ``model.cooper``), or its `ModelKind`.
        config: an `SFTConfig`.
        records: training records (default: read from ``config.data``).
        eval_records: held-out records (default: read from ``config.eval_data``).
        eval_hooks: extra evaluation callables (see `cooper_lib.training.loop.Trainer`).
        accelerator: an `Accelerator` to use (default: one built from ``config.run``).
        tokenizer: a `CooperModel`'s text tokenizer (`cooper_lib.models.cooper.load_tokenizer`).

    Example:
        >>> from cooper_lib.training import InterleavedSFTTrainer, SFTConfig
        >>> from cooper_lib.training.weights import build_model
        >>> config = SFTConfig(data=["data/synth-sft/records.jsonl"])
        >>> trainer = InterleavedSFTTrainer(build_model(config.model), config)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: SpatialModel | CooperModel | ModelKind,
        config: SFTConfig,
        *,
        records: Sequence[SFTRecord] | None = None,
        eval_records: Sequence[SFTRecord] | None = None,
        eval_hooks: Sequence[EvalHook] = (),
        accelerator: Any = None,
        tokenizer: Any = None,
    ) -> None:
        kind = model_kind(model, tokenizer)
        records, eval_records = trainer_inputs(
            kind,
            config,
            SFTConfig,
            records,
            eval_records,
            lambda paths: load_sft_records(paths, allow_outside_root=config.run.allow_outside_root),
        )
        super().__init__(
            kind,
            config,
            records=records,
            sources=["sft"] * len(records),
            weights={"sft": 1.0},
            collator=kind.sft_collator(config),
            eval_records=eval_records,
            eval_hooks=eval_hooks,
            accelerator=accelerator,
        )

    def evaluation_samples(self) -> list[Sample]:
        """Greedy interleaved traces (`InterleavedReasoner`, turns up to
        ``sample_max_new_tokens``) of the first ``run.log_samples`` held-out records' prompts
        (`cooper_lib.training.tracking.sft_prompt`), with the reference answer; main process only,
        none when parameters are sharded (FSDP / ZeRO-3: no process holds the whole model)."""
        if not self.accelerator.is_main_process or self.shards_parameters:
            return []
        from cooper_lib.reasoning import InterleavedReasoner

        samples = []
        for i, record in enumerate(self.eval_records[: self.run.log_samples]):
            prompt = sft_prompt(record)
            if prompt is None:
                continue
            image, question, system = prompt
            reasoner = InterleavedReasoner(
                self.spatial,
                max_new_tokens_per_turn=self.config.sample_max_new_tokens,
                system_prompt=system or self.collator.system_prompt or None,
            )
            with self.accelerator.autocast():
                trace = reasoner.run(image, question)
            samples.append(trace_sample(f"eval-{i}", trace, f"reference: {record.meta.get('answer', '?')}"))
        return samples
