"""`Stage1Trainer`: auxiliary-modality generation (COOPER's stage 1, the "AMG" checkpoint).

Each record asks for one map of one image (image + COOPER's tagged instruction + a query block);
the head of that modality is trained on the true map, and the gradient reaches the backbone
through the queries. Sources are sampled by weight (COOPER: depth 0.5, segmentation 0.5).
Evaluation reports the losses and, from the generated maps, depth AbsRel and segmentation mIoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cooper_lib.eval.metrics import abs_rel, confusion_matrix, mean_iou
from cooper_lib.heads.dense import SEG_IGNORE_INDEX
from cooper_lib.model import SpatialModel, SpatialOutput
from cooper_lib.training.collators import Stage1Collator
from cooper_lib.training.config import Stage1Config
from cooper_lib.training.loop import EvalHook
from cooper_lib.training.records import Stage1Example, load_stage1_records
from cooper_lib.training.supervised import SupervisedTrainer


class Stage1Trainer(SupervisedTrainer):
    """Train a `SpatialModel` to generate auxiliary maps.

    Args:
        model: the `SpatialModel`.
        config: a `Stage1Config`.
        records: training records (default: read from ``config.data``).
        eval_records: held-out records (default: read from ``config.eval_data``).
        eval_hooks: extra evaluation callables (see `cooper_lib.training.loop.Trainer`).
        accelerator: an `Accelerator` to use (default: one built from ``config.run``).
    """

    wants_maps = True

    def __init__(
        self,
        model: SpatialModel,
        config: Stage1Config,
        *,
        records: Sequence[Stage1Example] | None = None,
        eval_records: Sequence[Stage1Example] | None = None,
        eval_hooks: Sequence[EvalHook] = (),
        accelerator: Any = None,
    ) -> None:
        if not isinstance(config, Stage1Config):
            raise TypeError(f"config: expected a Stage1Config, got {type(config).__name__}")
        records = load_stage1_records(config.data) if records is None else list(records)
        if eval_records is None:
            eval_records = load_stage1_records(config.eval_data) if config.eval_data else []
        headless = sorted({r.modality for r in [*records, *eval_records]} - set(model.config.modalities))
        if headless:
            raise ValueError(
                f"records: modalities {headless} have no head; the model has {list(model.config.modalities)}"
            )
        super().__init__(
            model,
            config,
            records=records,
            sources=[r.source for r in records],
            weights=dict(config.mixture),
            collator=Stage1Collator(model, config.target_size, config.lm_loss_on_tag),
            eval_records=eval_records,
            eval_hooks=eval_hooks,
            accelerator=accelerator,
        )

    def map_metric_names(self) -> list[str]:
        return ["depth/abs_rel", "segmentation/miou"]

    def map_metrics(self, batch: dict[str, Any], out: SpatialOutput) -> dict[str, float]:
        """Depth AbsRel (mean over maps, valid pixels only) and segmentation mIoU of the batch."""
        metrics = {}
        targets = batch["aux_targets"]
        if "depth" in out.maps:
            pred, gt = _to_size(out.maps["depth"], targets["depth"]), targets["depth"].float()
            valid = torch.isfinite(gt) & (gt > 0)
            scores = [abs_rel(p, g, v) for p, g, v in zip(pred, gt, valid, strict=True) if bool(v.any())]
            if scores:
                metrics["depth/abs_rel"] = sum(scores) / len(scores)
        if "segmentation" in out.maps:
            pred, gt = _to_size(out.maps["segmentation"], targets["segmentation"]), targets["segmentation"]
            confmat = confusion_matrix(
                pred, gt, self.spatial.config.num_classes, ignore_index=SEG_IGNORE_INDEX
            )
            metrics["segmentation/miou"] = mean_iou(confmat)
        return metrics


def _to_size(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Predicted maps [n, h, w] resized (nearest) to the targets' size."""
    if pred.shape[-2:] == target.shape[-2:]:
        return pred
    return F.interpolate(pred[:, None].double(), size=target.shape[-2:], mode="nearest-exact")[:, 0].to(
        pred.dtype
    )
