"""`add_spatial_heads`: the one verb that turns a Hugging Face MLLM into a `SpatialModel`.

It gathers the arguments into a `SpatialConfig`; `SpatialModel.from_config` makes the changes
(`cooper_lib.graft`: every check before the first change, so a failed attach leaves the backbone
and the tokenizer as they were).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.model import SpatialModel


def add_spatial_heads(
    model: nn.Module,
    processor: Any,
    modalities: tuple[str, ...] | list[str] = ("depth", "segmentation"),
    head: str | dict[str, str] = "dense",
    *,
    query_grid: tuple[int, int] = (8, 8),
    output_size: tuple[int, int] = (64, 64),
    num_classes: int = 150,
    depth_mode: str = "metric",
    tags: dict[str, ModalitySpec | dict[str, str]] | None = None,
    aux_tokenizer: str | os.PathLike | dict[str, str | os.PathLike] | None = None,
    train_backbone: bool = False,
    **config_kwargs: Any,
) -> SpatialModel:
    """Attach perception queries and one generation head per modality to `model`.

    Args:
        model: a transformers MLLM (`*ForConditionalGeneration` / `AutoModelForImageTextToText`),
            optionally PEFT-wrapped.
        processor: the model's own processor; its tokenizer receives the added tokens.
        modalities: auxiliary modalities (`"depth"`, `"segmentation"`, `"normals"`, or names
            defined in `tags`).
        head: generation head (`"dense"`, `"flow"` or `"discrete"`) for every modality, or a dict
            naming one per modality.
        query_grid: (rows, cols) of perception queries per request; K = rows * cols.
        output_size: (height, width) of the generated maps.
        num_classes: segmentation classes.
        depth_mode: `"metric"` or `"relative"`.
        tags: per modality, `ModalitySpec(open_tag, close_tag, instruction)` overriding COOPER's.
        aux_tokenizer: folder of a saved map tokenizer (`VQTokenizer` for `"discrete"`,
            `PatchTokenizer` for `"flow"`) for every modality, or a dict of folders per modality;
            it becomes the `"tokenizer"` head option.
        train_backbone: leave every backbone weight trainable. By default the backbone is frozen
            (as PEFT freezes its base model) except the added tokens' embedding rows;
            `SpatialModel.set_backbone_trainable` switches later. A backbone that trained is saved
            by `save_pretrained` with the heads.
        config_kwargs: further `SpatialConfig` fields (query_source, head_width, loss weights, query_token, ...).

    Returns:
        the `SpatialModel`; the backbone is shared, not copied.

    Example:
        >>> from cooper_lib import add_spatial_heads
        >>> from cooper_lib.backbones.tiny import build_tiny_backbone
        >>> backbone, processor = build_tiny_backbone("qwen2_vl")  # or any HF MLLM + processor
        >>> model = add_spatial_heads(backbone, processor, ("depth", "segmentation"), num_classes=7)
        >>> sorted(model.heads)
        ['depth', 'segmentation']
    """
    if aux_tokenizer is not None:
        config_kwargs["head_options"] = _with_tokenizer(
            config_kwargs.get("head_options") or {}, aux_tokenizer
        )
    config = SpatialConfig(
        modalities=tuple(modalities),
        head=head,
        query_grid=query_grid,
        output_size=output_size,
        num_classes=num_classes,
        depth_mode=depth_mode,
        tags=dict(tags or {}),
        **config_kwargs,
    )
    spatial = SpatialModel.from_config(model, processor, config)
    if train_backbone:
        spatial.set_backbone_trainable(True)
    return spatial


def _with_tokenizer(
    head_options: dict[str, Any], aux_tokenizer: str | os.PathLike | dict[str, str | os.PathLike]
) -> dict[str, Any]:
    """`head_options` with `aux_tokenizer` set as the `"tokenizer"` option (shared, or per modality)."""
    if isinstance(aux_tokenizer, str | os.PathLike):
        if "tokenizer" in head_options:
            raise ValueError("aux_tokenizer: head_options already has a 'tokenizer'; give it in one place")
        return {**head_options, "tokenizer": os.fspath(aux_tokenizer)}
    if not isinstance(aux_tokenizer, dict):
        raise TypeError(
            f"aux_tokenizer: expected a folder path or a dict {{modality: folder}}, got {type(aux_tokenizer).__name__}"
        )
    options = dict(head_options)
    for modality, folder in aux_tokenizer.items():
        own = dict(options.get(modality, {}))
        if "tokenizer" in own:
            raise ValueError(
                f"aux_tokenizer: head_options[{modality!r}] already has a 'tokenizer'; give it in one place"
            )
        options[modality] = {**own, "tokenizer": os.fspath(folder)}
    return options
