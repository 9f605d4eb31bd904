"""`add_spatial_heads`: the one verb that turns a Hugging Face MLLM into a `SpatialModel`.

Every check runs before anything is changed, so a failed attach leaves the backbone and the
tokenizer as they were; building the heads is one of the checks. The changes, in order: tag and
query tokens added to the tokenizer, the embeddings grown to hold them (new rows set to the mean
of the existing vocabulary's rows, so they start at the scale of real tokens), queries built, the
query hook registered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from timm.layers import build_sincos2d_pos_embed
from tokenizers import AddedToken
from torch import nn

from cooper_lib.backbones import BackboneAdapter, adapter_for
from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.heads import build_head
from cooper_lib.layout import PerceptionLayout
from cooper_lib.model import SpatialModel, check_addition_state

_ATTACHED = "_cooper_spatial_attached"


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
        config_kwargs: further `SpatialConfig` fields (head_width, loss weights, query_token, ...).

    Returns:
        the `SpatialModel`; the backbone is shared, not copied.
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
    return attach_from_config(model, processor, config)


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


def attach_from_config(
    model: nn.Module,
    processor: Any,
    config: SpatialConfig,
    *,
    state: Mapping[str, torch.Tensor] | None = None,
) -> SpatialModel:
    """Attach what `config` describes; when `config` records `added_tokens` (a saved model), the
    tokenizer must give them the same ids, and the hidden size must match.

    `state` (saved additions, as `SpatialModel.addition_state_dict` gives them) is checked against
    the names and shapes this config implies before anything changes, and loaded after the attach.
    """
    if isinstance(model, SpatialModel):
        raise TypeError(
            "model: expected a transformers model, got a SpatialModel (it already has spatial heads)"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    adapter = adapter_for(model)
    if getattr(adapter.model, _ATTACHED, False):
        raise ValueError(
            "model: spatial heads are already attached to this backbone; reuse the SpatialModel that "
            "add_spatial_heads returned (or load a fresh backbone)"
        )
    tokenizer = adapter.tokenizer(processor)
    if not hasattr(tokenizer, "add_tokens"):
        raise TypeError(
            f"processor: expected a processor or tokenizer with add_tokens, got {type(processor).__name__}"
        )
    adapter.check_processor(processor)
    if config.hidden_size is not None and config.hidden_size != adapter.hidden_size:
        raise ValueError(
            f"config: the heads were saved for a backbone with hidden_size={config.hidden_size} "
            f"(model_type {config.backbone_model_type!r}), but this {adapter.model_type!r} backbone has "
            f"hidden_size={adapter.hidden_size}"
        )
    strings = _token_strings(config)
    planned = _planned_ids(tokenizer, strings)
    if config.added_tokens and config.added_tokens != planned:
        raise ValueError(
            f"processor: the saved heads expect token ids {config.added_tokens}, but this tokenizer would "
            f"assign {planned}; use the tokenizer the heads were trained with"
        )

    # Heads are built before anything changes: a head that cannot be built (a missing tokenizer
    # folder, a bad option) is one more check.
    heads = {name: build_head(config, name, adapter.hidden_size) for name in config.modalities}
    if state is not None:
        rows = len(set(planned.values()))
        check_addition_state(state, _addition_shapes(config, adapter, heads, rows))

    # ---- every check passed: change the tokenizer and the embeddings
    base_rows = min(len(tokenizer), adapter.input_embeddings().num_embeddings)
    tokenizer.add_tokens([AddedToken(s, special=False, normalized=False) for s in strings[:-1]])
    tokenizer.add_tokens([AddedToken(strings[-1], special=True, normalized=False)], special_tokens=True)
    ids = _planned_ids(tokenizer, strings)
    _grow_embeddings(adapter, sorted(ids.values()), base_rows)
    config.added_tokens = ids
    config.hidden_size = adapter.hidden_size
    config.backbone_model_type = adapter.model_type
    layout = PerceptionLayout(config, tokenizer)
    query_init, query_pos = _query_tensors(adapter, config, base_rows)
    spatial = SpatialModel(model, processor, config, adapter, layout, query_init, query_pos, heads)
    setattr(adapter.model, _ATTACHED, True)
    if state is not None:
        spatial.load_addition_state_dict(state)
    return spatial


def _addition_shapes(
    config: SpatialConfig, adapter: BackboneAdapter, heads: Mapping[str, nn.Module], rows: int
) -> dict[str, torch.Size]:
    """Names and shapes of the tensors `SpatialModel.addition_state_dict` will hold for this attach."""
    hidden = adapter.hidden_size
    query = torch.Size((config.num_queries, hidden))
    shapes = {f"queries.{name}": query for name in config.modalities}
    shapes["query_pos"] = query
    for name, head in heads.items():
        shapes.update({f"heads.{name}.{key}": value.shape for key, value in head.state_dict().items()})
    shapes["embed_tokens.rows"] = torch.Size((rows, hidden))
    if not adapter.tied_embeddings:
        shapes["lm_head.rows"] = torch.Size((rows, hidden))
    return shapes


def _token_strings(config: SpatialConfig) -> list[str]:
    """Tag strings of every modality, then the query token (last)."""
    tags = [
        s for name in config.modalities for s in (config.spec(name).open_tag, config.spec(name).close_tag)
    ]
    return [*tags, config.query_token]


def _planned_ids(tokenizer: Any, strings: list[str]) -> dict[str, int]:
    """Ids the strings have, or will have once added in order (existing single tokens are reused)."""
    vocab = tokenizer.get_vocab()
    ids = {}
    next_id = len(tokenizer)
    for text in strings:
        if text in vocab:
            ids[text] = int(vocab[text])
        else:
            ids[text] = next_id
            next_id += 1
    return ids


def _grow_embeddings(adapter: BackboneAdapter, ids: list[int], base_rows: int) -> None:
    """Make room for `ids` and set their rows to the mean row of the first `base_rows` (the old vocabulary)."""
    needed = max(ids) + 1
    rows = min(adapter.input_embeddings().weight.shape[0], adapter.output_embeddings().weight.shape[0])
    if needed > rows:
        adapter.resize_embeddings(needed)
        rows = min(adapter.input_embeddings().weight.shape[0], adapter.output_embeddings().weight.shape[0])
        if needed > rows:
            raise RuntimeError(
                f"{type(adapter).__name__}.resize_embeddings({needed}) left only {rows} rows in the input or "
                "output embeddings; the adapter must grow both"
            )
    index = torch.tensor(ids, dtype=torch.long)
    with torch.no_grad():
        weights = [adapter.input_embeddings().weight]
        if not adapter.tied_embeddings:
            weights.append(adapter.output_embeddings().weight)
        for weight in weights:
            mean = weight[:base_rows].float().mean(dim=0)
            weight[index.to(weight.device)] = mean.to(weight.dtype)


def _query_tensors(
    adapter: BackboneAdapter, config: SpatialConfig, base_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial learned queries (mean embedding output + small noise) and the fixed 2-D sin-cos code.

    Statistics come from the embedding module's *output* (not its weight), so families that scale
    embeddings (Gemma) get queries at the scale the decoder sees.
    """
    embedding = adapter.input_embeddings()
    weight = embedding.weight
    sample = torch.arange(0, base_rows, max(1, base_rows // 4096), device=weight.device)
    with torch.no_grad():
        rows = embedding(sample).float()
    mean, std = rows.mean(dim=0), rows.std(dim=0).mean().clamp(min=1e-6)
    k, hidden = config.num_queries, adapter.hidden_size
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(k, hidden, generator=generator).to(weight.device)
    query_init = (mean + 0.02 * std * noise).to(weight.dtype)
    pos_dim = hidden - hidden % 4
    pos = torch.zeros(k, hidden)
    if pos_dim:
        pos[:, :pos_dim] = build_sincos2d_pos_embed(list(config.query_grid), dim=pos_dim)
    query_pos = (pos * std.cpu()).to(device=weight.device, dtype=weight.dtype)
    return query_init, query_pos
