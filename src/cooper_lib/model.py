"""`SpatialModel`: a backbone plus perception queries, generation heads and their losses.

The backbone stays a plain transformers model underneath (PEFT's pattern): the model keeps its
own forward, `generate` and weights; cooper-lib adds K learned queries per modality that replace
the embeddings of the query token (through a forward hook on the input embeddings), one head per
modality that decodes the queries' last hidden states into a map, and the added rows of the
embedding matrix. `save_pretrained` writes only those additions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cooper_lib import ops
from cooper_lib.backbones import BackboneAdapter
from cooper_lib.config import CONFIG_NAME, SpatialConfig
from cooper_lib.graft import check_addition_state, graft
from cooper_lib.heads import build_head
from cooper_lib.images import to_pil
from cooper_lib.layout import PerceptionLayout, QueryPositions

WEIGHTS_NAME = "spatial_heads.safetensors"
IGNORE_INDEX = -100


@dataclass
class SpatialOutput:
    """What `SpatialModel.forward` returns.

    Attributes:
        loss: weighted sum of the LM loss and the auxiliary losses (None without labels or targets).
        lm_loss: cross-entropy on labelled text positions (None without labels).
        aux_losses: per modality, the auxiliary loss of the blocks that had targets.
        query_states: per modality, the last hidden states of its query blocks [n, K, H], in
            (sample, position) order.
        maps: per modality, the generated maps of those blocks (only with `return_maps=True`):
            depth [n, h, w], segmentation class ids [n, h, w], normals [n, 3, h, w].
    """

    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    query_states: dict[str, torch.Tensor] = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)


class SpatialModel(nn.Module):
    """A backbone with perception queries and heads. Build it with `add_spatial_heads`.

    Attributes:
        backbone: the model passed in (possibly PEFT-wrapped), unchanged except for added token rows.
        config: the `SpatialConfig`.
        adapter: the `BackboneAdapter` that finds the backbone's parts.
        layout: the `PerceptionLayout` (tag and query token ids).
        queries: per modality, K learned query embeddings [K, H].
        heads: per modality, the generation head.

    Example:
        >>> import torch
        >>> from cooper_lib import add_spatial_heads
        >>> from cooper_lib.backbones.tiny import build_tiny_backbone
        >>> model = add_spatial_heads(*build_tiny_backbone("qwen2_vl"), ("depth",))
        >>> image = torch.rand(3, 64, 64)
        >>> inputs = model.perception_inputs([image], "depth")
        >>> out = model(**inputs, aux_targets={"depth": torch.full((1, 64, 64), 2.0)})
        >>> out.loss.backward()  # SILog depth loss, through the queries into the backbone
        >>> model.perceive([image], "depth")[0].ndim  # a depth map in metres
        2
    """

    def __init__(
        self,
        backbone: nn.Module,
        processor: Any,
        config: SpatialConfig,
        adapter: BackboneAdapter,
        layout: PerceptionLayout,
        query_init: torch.Tensor,
        query_pos: torch.Tensor,
        heads: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.processor = processor
        self.config = config
        self.adapter = adapter
        self.layout = layout
        self.queries = nn.ParameterDict(
            {name: nn.Parameter(query_init.clone()) for name in config.modalities}
        )
        self.register_buffer("query_pos", query_pos, persistent=False)
        if heads is None:
            heads = {name: build_head(config, name, config.hidden_size) for name in config.modalities}
        self.heads = nn.ModuleDict({name: heads[name].to(query_init.device) for name in config.modalities})
        self.register_buffer(
            "added_token_ids",
            torch.tensor(sorted(config.added_tokens.values()), dtype=torch.long),
            persistent=False,
        )
        self._hook = adapter.input_embeddings().register_forward_hook(self._substitute_queries)

    # ------------------------------------------------------------------ queries
    def _substitute_queries(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the input embeddings: query-token positions get the learned queries."""
        input_ids = args[0] if args else None
        if not isinstance(input_ids, torch.Tensor) or not bool((input_ids == self.layout.query_id).any()):
            return output
        positions = self.layout.locate(input_ids.reshape(-1, input_ids.shape[-1]))
        table = torch.stack([self.queries[name] for name in self.config.modalities]) + self.query_pos
        flat = output.reshape(-1, output.shape[-1]).clone()
        mask = positions.mask.reshape(-1)
        flat[mask] = table[positions.modality.reshape(-1)[mask], positions.rank.reshape(-1)[mask]].to(
            flat.dtype
        )
        return flat.reshape(output.shape)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        aux_targets: Mapping[str, torch.Tensor] | None = None,
        return_maps: bool = False,
        **model_inputs: Any,
    ) -> SpatialOutput:
        """Run the backbone once, gather every query block, and compute the losses asked for.

        Args:
            input_ids: token ids [B, T] as the backbone's processor makes them.
            attention_mask: [B, T] padding mask.
            labels: [B, T] next-token labels in transformers' convention (shifted inside; -100 ignored).
                Query and image-token positions are never supervised by the LM loss.
            aux_targets: per modality, one target per query block of that modality, in (sample,
                position) order: depth [n, h, w] float metres (0, NaN, inf and negative values are
                masked out, not used), segmentation [n, h, w] integer class ids (255 ignored),
                normals [n, 3, h, w] float (non-finite pixels masked).
            return_maps: also generate the maps of every block (under no_grad).
            **model_inputs: the backbone's other inputs (pixel values, image grids, ...).
        """
        hidden = self.adapter.hidden_states(
            input_ids=input_ids, attention_mask=attention_mask, **model_inputs
        )
        positions = self.layout.locate(input_ids)
        out = SpatialOutput(query_states=self._query_states(hidden, positions))
        total: torch.Tensor | None = None
        if labels is not None:
            out.lm_loss = self.lm_loss(hidden, labels, input_ids, positions.mask)
            total = self.config.lm_loss_weight * out.lm_loss
        for name, target in _check_targets(aux_targets, out.query_states, self.config).items():
            loss = self.heads[name].loss(out.query_states[name], target)
            out.aux_losses[name] = loss
            weighted = self.config.aux_weight(name) * loss
            total = weighted if total is None else total + weighted
        out.loss = total
        if return_maps:
            with torch.no_grad():
                out.maps = {name: self.heads[name].generate(q) for name, q in out.query_states.items()}
        return out

    def _query_states(self, hidden: torch.Tensor, positions: QueryPositions) -> dict[str, torch.Tensor]:
        states = {}
        k = self.config.num_queries
        for index, name in enumerate(self.config.modalities):
            select = positions.mask & (positions.modality == index)
            if bool(select.any()):
                states[name] = hidden[select].reshape(-1, k, hidden.shape[-1])
        return states

    def lm_loss(
        self, hidden: torch.Tensor, labels: torch.Tensor, input_ids: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """Next-token cross-entropy from hidden states, through the fused `ops.linear_cross_entropy`.

        Query and image-token positions are never targets, whatever `labels` holds there.
        """
        if labels.shape != hidden.shape[:2]:
            raise ValueError(f"labels: expected shape {tuple(hidden.shape[:2])}, got {tuple(labels.shape)}")
        ignored = query_mask | (input_ids == self.adapter.image_token_id)
        labels = labels.masked_fill(ignored, IGNORE_INDEX)[:, 1:]
        keep = labels != IGNORE_INDEX
        head = self.adapter.output_embeddings()
        return ops.linear_cross_entropy(
            hidden[:, :-1][keep],
            head.weight,
            labels[keep],
            bias=getattr(head, "bias", None),
            softcap=self.adapter.logit_softcap,
        )

    # ------------------------------------------------------------------ perception
    def perception_inputs(
        self, images: Sequence[Any], modality: str | Sequence[str], **processor_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Model inputs asking for a map of each image: COOPER's tagged instruction, then a query block.

        Args:
            images: PIL images, [H, W, 3] / [3, H, W] arrays or tensors, paths (`cooper_lib.images`).
            modality: one modality for every image, or one per image (a mixed batch).
        """
        pil_images = [to_pil(image, f"images[{i}]") for i, image in enumerate(images)]
        if not pil_images:
            raise ValueError("images: expected at least one image, got an empty sequence")
        modalities = [modality] * len(pil_images) if isinstance(modality, str) else list(modality)
        if len(modalities) != len(pil_images):
            raise ValueError(
                f"modality: expected one name per image ({len(pil_images)}), got {len(modalities)}"
            )
        texts = []
        for name in modalities:
            self._check_modality(name)
            messages = [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": self.layout.request_text(name)}],
                },
                {"role": "assistant", "content": self.layout.query_text()},
            ]
            texts.append(self.adapter.render_chat(self.processor, messages, continue_final_message=True))
        return self.adapter.build_inputs(
            self.processor, texts, [[image] for image in pil_images], **processor_kwargs
        )

    @torch.no_grad()
    def perceive(self, images: Sequence[Any] | Any, modality: str, **options: Any) -> torch.Tensor:
        """Generate `modality`'s map for each image: depth [B, h, w] in metres (relative units in
        relative mode), segmentation class ids [B, h, w], or unit normals [B, 3, h, w].

        `options` go to the head's ``generate`` (a flow head's ``steps``, ``cfg_text_scale``, ``seed``, ...).
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        self._check_modality(modality)
        inputs = self.perception_inputs(images, modality)
        device = self.query_pos.device
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        return self.perceive_hidden(self.forward(**inputs).query_states[modality], modality, **options)

    @torch.no_grad()
    def perceive_hidden(self, query_hidden: torch.Tensor, modality: str, **options: Any) -> torch.Tensor:
        """Generate maps from already computed query hidden states [n, K, H] (e.g. a KV-cached step)."""
        self._check_modality(modality)
        return self.heads[modality].generate(query_hidden, **options)

    def _check_modality(self, modality: str) -> None:
        if modality not in self.heads:
            raise ValueError(f"modality: expected one of {list(self.heads)}, got {modality!r}")

    # ------------------------------------------------------------------ generation
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's own `generate` (query tokens in the prompt receive the learned queries)."""
        return self.backbone.generate(*args, **kwargs)

    # ------------------------------------------------------------------ save / load
    def addition_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what cooper-lib added: queries, heads, and the embedding rows of the added tokens."""
        state = {f"queries.{k}": v.detach() for k, v in self.queries.items()}
        state["query_pos"] = self.query_pos
        state.update({f"heads.{k}": v.detach() for k, v in self.heads.state_dict().items()})
        ids = self.added_token_ids.to(self.adapter.input_embeddings().weight.device)
        state["embed_tokens.rows"] = self.adapter.input_embeddings().weight.detach()[ids]
        if not self.adapter.tied_embeddings:
            state["lm_head.rows"] = self.adapter.output_embeddings().weight.detach()[ids]
        return {k: v.cpu().contiguous().clone() for k, v in state.items()}

    def load_addition_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load tensors written by `addition_state_dict` exactly; names and shapes must match."""
        check_addition_state(state, {k: v.shape for k, v in self.addition_state_dict().items()})
        with torch.no_grad():
            for name, param in self.queries.items():
                param.copy_(state[f"queries.{name}"])
            self.query_pos.copy_(state["query_pos"])
            self.heads.load_state_dict(
                {k[len("heads.") :]: v for k, v in state.items() if k.startswith("heads.")}
            )
            embed = self.adapter.input_embeddings().weight
            embed[self.added_token_ids.to(embed.device)] = state["embed_tokens.rows"].to(embed)
            if "lm_head.rows" in state:
                head = self.adapter.output_embeddings().weight
                head[self.added_token_ids.to(head.device)] = state["lm_head.rows"].to(head)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `cooper_config.json` and `spatial_heads.safetensors` (additions only) into `directory`."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path)
        save_file(self.addition_state_dict(), str(path / WEIGHTS_NAME), metadata={"format": "pt"})
        return path

    @classmethod
    def from_pretrained(
        cls,
        backbone: nn.Module,
        directory_or_repo: str | Path,
        processor: Any,
        *,
        revision: str | None = None,
        token: str | None = None,
    ) -> SpatialModel:
        """Re-attach saved additions to `backbone` (a local folder, or a hub repo id through huggingface_hub).

        Raises:
            ValueError: when the folder was saved for a backbone of another hidden size or type.
        """
        path = Path(directory_or_repo)
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            path = Path(
                snapshot_download(
                    str(directory_or_repo),
                    revision=revision,
                    token=token,
                    allow_patterns=[CONFIG_NAME, WEIGHTS_NAME],
                )
            )
        config = SpatialConfig.load(path)
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: missing; expected a folder written by save_pretrained")
        # The weights are checked inside the attach, before the backbone changes.
        return cls.from_config(backbone, processor, config, state=load_file(str(weights)))

    @classmethod
    def from_config(
        cls,
        backbone: nn.Module,
        processor: Any,
        config: SpatialConfig,
        *,
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> SpatialModel:
        """Attach what `config` describes to `backbone` (checks first, see `cooper_lib.graft`), then
        load `state` (saved additions, as `addition_state_dict` gives them) when given."""
        if isinstance(backbone, SpatialModel):
            raise TypeError(
                "model: expected a transformers model, got a SpatialModel (it already has spatial heads)"
            )
        made = graft(backbone, processor, config, state=state)
        spatial = cls(
            backbone,
            processor,
            made.config,
            made.adapter,
            made.layout,
            made.query_init,
            made.query_pos,
            made.heads,
        )
        if state is not None:
            spatial.load_addition_state_dict(state)
        return spatial

    def push_to_hub(
        self, repo_id: str, *, private: bool | None = None, token: str | None = None, commit_message: str = ""
    ) -> str:
        """Upload the additions (as `save_pretrained` writes them) to a hub repo; returns the commit URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message or "Upload cooper-lib spatial heads",
            )
        return str(getattr(info, "commit_url", info))


def _check_targets(
    targets: Mapping[str, torch.Tensor] | None, states: Mapping[str, torch.Tensor], config: SpatialConfig
) -> dict[str, torch.Tensor]:
    """Validate `aux_targets` against the query blocks found; return the targets to use."""
    if not targets:
        return {}
    checked = {}
    for name, target in targets.items():
        where = f"aux_targets[{name!r}]"
        if name not in config.modalities:
            raise ValueError(f"aux_targets: expected keys from {list(config.modalities)}, got {name!r}")
        target = config.modality(name).validate_target(target, where=where, num_classes=config.num_classes)
        blocks = states[name].shape[0] if name in states else 0
        if target.shape[0] != blocks:
            raise ValueError(
                f"{where}: expected {blocks} maps (one per {name} query block in the batch), got {target.shape[0]}"
            )
        checked[name] = target.to(states[name].device)
    return checked
