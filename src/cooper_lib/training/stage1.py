"""`Stage1Trainer`: auxiliary-modality generation (COOPER's stage 1, the "AMG" checkpoint).

Each record asks for one map of one image (image + COOPER's tagged instruction + a query block);
the head of that modality is trained on the true map, and the gradient reaches the backbone
through the queries. Sources are sampled by weight (COOPER: depth 0.5, segmentation 0.5).
Evaluation reports the losses and, from the generated maps, each modality's metrics (depth
AbsRel, segmentation mIoU, ...; `Modality.map_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cooper_lib.data.records import Stage1Example, load_stage1_records
from cooper_lib.model import SpatialModel, SpatialOutput
from cooper_lib.models.cooper import CooperModel
from cooper_lib.training.config import Stage1Config
from cooper_lib.training.kinds import ModelKind, model_kind, to_device
from cooper_lib.training.loop import EvalHook, trainer_inputs
from cooper_lib.training.supervised import SupervisedTrainer
from cooper_lib.training.tracking import Sample, map_grid_sample


class Stage1Trainer(SupervisedTrainer):
    """Train a `SpatialModel` (its heads) or a `CooperModel` (in-sequence flow matching,
    `CooperModel.stage1_loss`) to generate auxiliary maps.

    Args:
        model: the `SpatialModel` or `CooperModel` (or its `ModelKind`).
        config: a `Stage1Config`.
        records: training records (default: read from ``config.data``).
        eval_records: held-out records (default: read from ``config.eval_data``).
        eval_hooks: extra evaluation callables (see `cooper_lib.training.loop.Trainer`).
        accelerator: an `Accelerator` to use (default: one built from ``config.run``).
        tokenizer: a `CooperModel`'s text tokenizer (`cooper_lib.models.cooper.load_tokenizer`).

    A `CooperModel`'s evaluation reports the held-out flow loss (conditions never dropped), not
    map metrics: those need a full sampling run per map (`cooper-lib eval run`).

    Example:
        >>> from cooper_lib.training import Stage1Config, Stage1Trainer
        >>> from cooper_lib.training.weights import build_model
        >>> config = Stage1Config(data=["data/synth-stage1/records.jsonl"])  # or hf://org/name
        >>> trainer = Stage1Trainer(build_model(config.model), config)  # doctest: +SKIP
        >>> trainer.train().final_dir  # doctest: +SKIP
        PosixPath('runs/cooper/final')
    """

    wants_maps = True

    def __init__(
        self,
        model: SpatialModel | CooperModel | ModelKind,
        config: Stage1Config,
        *,
        records: Sequence[Stage1Example] | None = None,
        eval_records: Sequence[Stage1Example] | None = None,
        eval_hooks: Sequence[EvalHook] = (),
        accelerator: Any = None,
        tokenizer: Any = None,
    ) -> None:
        kind = model_kind(model, tokenizer)
        records, eval_records = trainer_inputs(
            kind,
            config,
            Stage1Config,
            records,
            eval_records,
            lambda paths: load_stage1_records(paths, allow_outside_root=config.run.allow_outside_root),
        )
        kind.check_stage1_modalities({r.modality for r in [*records, *eval_records]})
        super().__init__(
            kind,
            config,
            records=records,
            sources=[r.source for r in records],
            weights=dict(config.mixture),
            collator=kind.stage1_collator(config),
            eval_records=eval_records,
            eval_hooks=eval_hooks,
            accelerator=accelerator,
        )

    def map_metric_names(self) -> list[str]:
        config = self.spatial.config
        return [metric for name in config.modalities for metric in config.modality(name).metric_names]

    def map_metrics(self, batch: dict[str, Any], out: SpatialOutput) -> dict[str, float]:
        """Each modality's metrics of the batch's generated maps (`Modality.map_metrics`: depth
        AbsRel over valid pixels averaged over maps, segmentation mIoU, ...)."""
        config = self.spatial.config
        metrics = {}
        targets = batch["aux_targets"]
        for name, maps in out.maps.items():
            if name in targets:
                metrics.update(
                    config.modality(name).map_metrics(
                        _to_size(maps, targets[name]), targets[name], num_classes=config.num_classes
                    )
                )
        return metrics

    def evaluation_samples(self) -> list[Sample]:
        """The first ``run.log_samples`` held-out records as input / target / prediction grids
        (none for a `CooperModel`: see the class docstring)."""
        part = self.eval_records[: self.run.log_samples]
        return self.kind.stage1_samples(self, part) if part else []

    def map_samples(self, part: Sequence[Stage1Example]) -> list[Sample]:
        """Input / target / prediction grids of ``part`` drawn by the `SpatialModel`'s heads."""
        batch = to_device(self.collator(part), self.accelerator.device)
        maps = self.model(**batch, return_maps=True).maps
        seen: dict[str, int] = {}
        samples = []
        for i, record in enumerate(part):
            k = seen[record.modality] = seen.get(record.modality, -1) + 1
            target = batch["aux_targets"][record.modality][k]
            pred = _to_size(maps[record.modality][k : k + 1], target[None])[0]
            samples.append(map_grid_sample(f"eval-{i}", record, target, pred, self.spatial.config))
        return samples


def _to_size(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Predicted maps [n, h, w] or [n, C, h, w] resized (nearest) to the targets' size."""
    if pred.shape[-2:] == target.shape[-2:]:
        return pred
    flat = pred.reshape(-1, 1, *pred.shape[-2:]).double()
    resized = F.interpolate(flat, size=target.shape[-2:], mode="nearest-exact")
    return resized.reshape(*pred.shape[:-2], *target.shape[-2:]).to(pred.dtype)
