"""The changes `add_spatial_heads` makes to a backbone, checked before they are made.

Every check runs before anything is changed, so a failed attach leaves the backbone and the
tokenizer as they were; building the heads is one of the checks. The changes, in order: tag and
query tokens added to the tokenizer, the embeddings grown to hold them (new rows set to the mean
of the existing vocabulary's rows, so they start at the scale of real tokens), queries built.
`SpatialModel` (which registers the query hook) is built from the result, so this module sits
below `cooper_lib.model` and `cooper_lib.attach` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import AddedToken
from torch import nn

from cooper_lib.backbones import BackboneAdapter, adapter_for
from cooper_lib.config import SpatialConfig
from cooper_lib.heads import build_head
from cooper_lib.layout import PerceptionLayout

_ATTACHED = "_cooper_spatial_attached"


@dataclass
class Graft:
    """What `graft` made: the pieces a `SpatialModel` is built from."""

    config: SpatialConfig
    adapter: BackboneAdapter
    layout: PerceptionLayout
    query_init: torch.Tensor
    query_pos: torch.Tensor
    heads: dict[str, nn.Module]


def graft(
    model: nn.Module,
    processor: Any,
    config: SpatialConfig,
    *,
    state: Mapping[str, torch.Tensor] | None = None,
) -> Graft:
    """Make the changes `config` describes on `model` and `processor`; when `config` records
    `added_tokens` (a saved model), the tokenizer must give them the same ids, and the hidden size
    must match.

    `state` (saved additions, as `SpatialModel.addition_state_dict` gives them) is checked against
    the names and shapes this config implies before anything changes; the caller loads it.
    """
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
    setattr(adapter.model, _ATTACHED, True)
    return Graft(config, adapter, layout, query_init, query_pos, heads)


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
    from timm.layers import build_sincos2d_pos_embed  # timm is imported when queries are built

    pos_dim = hidden - hidden % 4
    pos = torch.zeros(k, hidden)
    if pos_dim:
        pos[:, :pos_dim] = build_sincos2d_pos_embed(list(config.query_grid), dim=pos_dim)
    query_pos = (pos * std.cpu()).to(device=weight.device, dtype=weight.dtype)
    return query_init, query_pos


def check_addition_state(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]) -> None:
    """Raise a ValueError unless `state` holds exactly the tensors named in `expected`, at those shapes."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"state: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in state.items():
        if tensor.shape != expected[name]:
            raise ValueError(
                f"state[{name!r}]: expected shape {tuple(expected[name])}, got {tuple(tensor.shape)}"
            )
