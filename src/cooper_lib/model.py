"""`SpatialModel`: a backbone plus perception queries, generation heads and their losses.

The backbone stays a plain transformers model underneath (PEFT's pattern): the model keeps its
own forward, `generate` and weights; cooper-lib adds K learned queries per modality that replace
the embeddings of the query token (through a forward hook on the input embeddings), one head per
modality that decodes the queries' last hidden states into a map, and the added rows of the
embedding matrix. The backbone is frozen by default (as PEFT freezes its base model), except the
added tokens' embedding rows (a gradient mask); `set_backbone_trainable(True)` trains all of it.
`save_pretrained` writes the additions, plus whatever of the backbone trained (LoRA as a PEFT
adapter, other weights as safetensors), atomically, into one folder (`cooper_lib.folder`).

It keeps the Hugging Face model contract where a trainer relies on it: `forward` returns a
`transformers.utils.ModelOutput` (loss first), so a plain `transformers.Trainer` trains it; its
`state_dict` leaves out tied aliases (safetensors refuses shared tensors) and carries the config as
extra state, so the ``model.safetensors`` a Trainer checkpoint writes is a complete model folder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from cooper_lib import folder, ops
from cooper_lib.backbones import BackboneAdapter
from cooper_lib.config import CONFIG_NAME, SpatialConfig
from cooper_lib.folder import WEIGHTS_NAME
from cooper_lib.graft import check_addition_state, graft
from cooper_lib.heads import build_head
from cooper_lib.images import to_pil
from cooper_lib.layout import PerceptionLayout, QueryPositions
from cooper_lib.query_seeds import QuerySeeder

IGNORE_INDEX = -100
TRAINER_WEIGHTS = "model.safetensors"
"""The file a plain `transformers.Trainer` writes for a model that is not a `PreTrainedModel`."""
_EXTRA_STATE = "_extra_state"


@dataclass
class SpatialOutput(ModelOutput):
    """What `SpatialModel.forward` returns (a `transformers.utils.ModelOutput`: attributes, keys,
    or tuple indices; ``output[0]`` is the loss when there is one).

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
    aux_losses: dict[str, torch.Tensor] | None = None
    query_states: dict[str, torch.Tensor] | None = None
    maps: dict[str, torch.Tensor] | None = None


class SpatialModel(nn.Module):
    """A backbone with perception queries and heads. Build it with `add_spatial_heads`, or load a
    saved one with `SpatialModel.from_pretrained`.

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

    main_input_name = "input_ids"
    accepts_loss_kwargs = False  # a Trainer must not pass num_items_in_batch into forward
    supports_gradient_checkpointing = True

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
        config.attach_backbone_config(backbone.config)
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
        self.query_seeder: QuerySeeder | None = None
        if config.query_source == "image":
            if not adapter.square_image_block:
                raise ValueError(
                    f"query_source: 'image' needs a backbone whose images reach the language model as one "
                    f"square block of visual tokens (the qwen2_vl, qwen2_5_vl, qwen3_vl, llava, paligemma "
                    f"and gemma3 families), got model_type {adapter.model_type!r}; use 'learned'"
                )
            self.query_seeder = QuerySeeder(adapter.image_token_id, layout.query_id, config.query_grid)
            adapter.language_model().register_forward_pre_hook(self.query_seeder, with_kwargs=True)
        self._row_masks: list[torch.utils.hooks.RemovableHandle] = []
        self._backbone_trained = False
        self._loaded_names: set[str] = set()
        self._frozen_rows: dict[int, tuple[float, float]] = {}
        self.register_state_dict_post_hook(_drop_tied_aliases)
        self.register_load_state_dict_pre_hook(_restore_tied_aliases)

    # ------------------------------------------------------------------ queries
    def _substitute_queries(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the input embeddings: query-token positions get the learned queries
        (and, with ``query_source="image"``, the `QuerySeeder` is told the call's ids)."""
        input_ids = args[0] if args else None
        if self.query_seeder is not None and isinstance(input_ids, torch.Tensor):
            self.query_seeder.note_ids(input_ids)
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
        states = self._query_states(hidden, positions)
        lm_loss, total = None, None
        if labels is not None:
            lm_loss = self.lm_loss(hidden, labels, input_ids, positions.mask)
            total = self.config.lm_loss_weight * lm_loss
        aux_losses = {}
        for name, target in _check_targets(aux_targets, states, self.config).items():
            aux_losses[name] = self.heads[name].loss(states[name], target)
            weighted = self.config.aux_weight(name) * aux_losses[name]
            total = weighted if total is None else total + weighted
        maps = {}
        if return_maps:
            with torch.no_grad():
                maps = {name: self.heads[name].generate(q) for name, q in states.items()}
        return SpatialOutput(
            loss=total, lm_loss=lm_loss, aux_losses=aux_losses, query_states=states, maps=maps
        )

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

    # ------------------------------------------------------------------ trainability
    def set_backbone_trainable(self, trainable: bool) -> None:
        """Train the whole backbone (`True`), or freeze it but the added tokens' embedding rows (`False`).

        Frozen is the default after `add_spatial_heads`: LoRA adapters (PEFT's, already in the
        backbone) stay trainable, and the embedding matrices stay trainable under
        a gradient mask that zeroes every row but the added ones (AdamW without weight decay on them
        then leaves the other rows exactly as they were). Once trained, `save_pretrained` writes the
        backbone's weights with the heads, even if it is frozen again later.
        """
        for handle in self._row_masks:
            handle.remove()
        self._row_masks = []
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(trainable or "lora_" in name)
        if trainable:
            self._backbone_trained = True
            return
        for weight in self.embedding_matrices():
            keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
            keep[self.added_token_ids.to(weight.device)] = 1
            weight.requires_grad_(True)
            # the mask follows the gradient: the model may move to another device after this
            self._row_masks.append(
                weight.register_hook(
                    lambda grad, keep=keep: grad * keep.to(device=grad.device, dtype=grad.dtype)
                )
            )
        self._frozen_rows = {id(w): self._other_rows_fingerprint(w) for w in self.embedding_matrices()}

    def _other_rows_fingerprint(self, weight: torch.Tensor) -> tuple[float, float]:
        """Sum and sum of squares (float64) of every row but the added tokens': a change shows there
        (weight decay on a row-masked matrix shrinks all of its rows)."""
        others = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
        others[self.added_token_ids.to(weight.device)] = False
        total, squares = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, weight.shape[0], 4096):  # in chunks: a 7B vocabulary in float64 is GBs
                rows = weight.detach()[start : start + 4096][others[start : start + 4096]].double()
                total, squares = total + float(rows.sum()), squares + float((rows * rows).sum())
        return total, squares

    def embedding_matrices(self) -> list[nn.Parameter]:
        """The input embedding matrix, and the output one when it is not tied to it."""
        weights = [self.adapter.input_embeddings().weight]
        if not self.adapter.tied_embeddings:
            weights.append(self.adapter.output_embeddings().weight)
        return weights

    def row_masked(self) -> list[nn.Parameter]:
        """The embedding matrices of which only the added tokens' rows train (empty when none)."""
        return self.embedding_matrices() if self._row_masks else []

    def changed_backbone_state(self) -> dict[str, torch.Tensor]:
        """Backbone weights that training may have changed, outside LoRA, keyed by their names in the
        backbone: all of them once the backbone was made trainable, else those that require grad
        (the row-masked embedding matrices excepted, while only their added rows changed: those rows
        are part of the additions), and those a loaded folder held (`loaded_backbone_names`)."""
        loaded = self.loaded_backbone_names()
        masked = {
            id(w)
            for w in self.row_masked()
            if self._other_rows_fingerprint(w) == self._frozen_rows.get(id(w))
        }  # a masked matrix whose other rows changed anyway (weight decay) is saved in full
        return {
            name: param.detach()
            for name, param in self.backbone.named_parameters()
            if "lora_" not in name
            and (
                self._backbone_trained or name in loaded or (param.requires_grad and id(param) not in masked)
            )
        }

    def loaded_backbone_names(self) -> set[str]:
        """Names (as the backbone has them now) of the weights a loaded folder set or LoRA was merged
        into. The base model a folder records does not hold them, so a stage that starts from that
        folder must save them even where it freezes them. A layer LoRA wrapped since keeps its
        weight under ``base_layer``."""
        return {
            name
            for name, _ in self.backbone.named_parameters()
            if "lora_" not in name and name.replace(".base_layer.", ".") in self._loaded_names
        }

    def has_lora(self) -> bool:
        """Whether the backbone carries LoRA adapters (a `peft.PeftModel`, or injected in place)."""
        return (
            folder.injected_lora(self.adapter.model) is not None
            or type(self.backbone).__name__ == "PeftModel"
        )

    # ------------------------------------------------------------------ HF model contract
    def get_text_config(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's text config (what HF tools read for vocab and hidden sizes)."""
        return self.backbone.config.get_text_config(*args, **kwargs)

    @property
    def generation_config(self) -> Any:
        """The backbone's `GenerationConfig` (what `generate` uses)."""
        return self.backbone.generation_config

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.backbone.generation_config = value

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether the backbone recomputes activations in backward."""
        for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # transformers 5, 4
            if hasattr(self.backbone, name):
                return bool(getattr(self.backbone, name))
        return False

    @property
    def base_model(self) -> nn.Module:
        """The backbone's decoder without its LM head (its output has ``last_hidden_state``)."""
        return self.adapter.decoder()

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's input embeddings (the added tokens' rows included)."""
        return self.adapter.input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        """The backbone's LM head."""
        return self.adapter.output_embeddings()

    def add_model_tags(self, tags: str | list[str]) -> None:
        """Add tags to the backbone's model card metadata (transformers' ``add_model_tags``)."""
        add = getattr(self.backbone, "add_model_tags", None)
        if callable(add):
            add(tags)

    @property
    def name_or_path(self) -> str:
        """The backbone's hub id, folder or ``tiny:`` spec ("" when unknown)."""
        return getattr(self.backbone.config, "_name_or_path", "") or ""

    @property
    def device(self) -> torch.device:
        """Where the parameters are."""
        return self.query_pos.device

    def can_generate(self) -> bool:
        """Whether `generate` works (the backbone's own answer)."""
        check = getattr(self.backbone, "can_generate", None)
        return bool(check()) if callable(check) else hasattr(self.backbone, "generate")

    def activation_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """Recompute the backbone's activations in the backward pass (transformers' switch)."""
        self.backbone.activation_checkpointing_enable(*args, **kwargs)

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict | None = None, **kwargs: Any
    ) -> None:
        """The backbone's gradient checkpointing (the older name of `activation_checkpointing_enable`)."""
        if hasattr(self.backbone, "activation_checkpointing_enable"):
            self.backbone.activation_checkpointing_enable(gradient_checkpointing_kwargs)
        else:
            self.backbone.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=gradient_checkpointing_kwargs
            )

    def gradient_checkpointing_disable(self) -> None:
        """Switch the backbone's gradient checkpointing off."""
        if hasattr(self.backbone, "activation_checkpointing_disable"):
            self.backbone.activation_checkpointing_disable()
        else:
            self.backbone.gradient_checkpointing_disable()

    def get_extra_state(self) -> torch.Tensor:
        """The config and base model as UTF-8 JSON bytes, so a state dict alone rebuilds the model."""
        dtype = str(self.adapter.input_embeddings().weight.dtype).removeprefix("torch.")
        record = {"config": self.config.to_dict(), "base_model": self.name_or_path or None, "dtype": dtype}
        return torch.tensor(list(json.dumps(record).encode()), dtype=torch.uint8)

    def set_extra_state(self, state: Any) -> None:
        """Check that a loaded state dict was saved for this model's config."""
        if type(state).__name__ == "_EXTRA_STATE":  # torch.distributed.checkpoint's placeholder: none given
            return
        saved = extra_state_record(state)["config"]
        if saved != self.config.to_dict():
            raise ValueError(
                "state: saved for another SpatialModel config (modalities, heads or token ids differ); "
                "load it with SpatialModel.from_pretrained"
            )

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path, **_hf_kwargs: Any) -> Path:
        """Write the model folder (`cooper_lib.folder`): config, additions, base model record, and the
        backbone weights that trained (LoRA as a PEFT adapter, others as ``backbone.safetensors``).

        The folder is written beside `directory` and renamed into place, so an interrupted save
        leaves an earlier save in `directory` loadable. Keyword arguments transformers passes
        (``state_dict``, ``is_main_process``, ...) are accepted and ignored.
        """
        with folder.atomic_folder(directory) as tmp:
            self.config.save(tmp)
            folder.save_tensors(self.addition_state_dict(), tmp / WEIGHTS_NAME)
            folder.write_base(tmp, self.backbone)
            if self.has_lora():
                folder.save_lora(self.adapter.model, self.backbone, tmp, self.name_or_path or None)
            changed = self.changed_backbone_state()
            if changed:
                folder.save_tensors(changed, tmp / folder.BACKBONE_WEIGHTS)
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls,
        backbone: nn.Module | str | Path,
        directory_or_repo: str | Path | None = None,
        processor: Any = None,
        *,
        revision: str | None = None,
        token: str | None = None,
        dtype: str | None = None,
    ) -> SpatialModel:
        """Load a model folder (local, or a hub repo id through huggingface_hub) in one call.

        ``SpatialModel.from_pretrained("org/repo")`` builds the backbone the folder records
        (``base_model.json``) and applies everything saved: heads, LoRA adapter, trained backbone
        weights. ``SpatialModel.from_pretrained(backbone, "org/repo", processor)`` uses a backbone
        you loaded (needed for folders that record none, written before cooper-lib recorded it).
        Folders a plain `transformers.Trainer` wrote (``model.safetensors``) load the same way.

        Args:
            backbone: the folder / repo id (one-call form), or a transformers backbone.
            directory_or_repo: the folder / repo id when `backbone` is a model.
            processor: the backbone's processor (with a backbone passed in).
            revision: hub download option (a branch, tag or commit).
            token: hub download option (an access token).
            dtype: the backbone dtype in the one-call form (default: the one the folder records).

        Raises:
            ValueError: the folder was saved for a backbone of another hidden size or type, or a
                weights file holds NaN/inf.
            FileNotFoundError: a path (a `Path`, or text no repo id can be) names no folder, or
                the folder holds no model.
        """
        if isinstance(backbone, (str, Path)):
            if directory_or_repo is not None or processor is not None:
                raise TypeError(
                    "from_pretrained: expected (folder_or_repo) or (backbone, folder_or_repo, processor), "
                    f"got a path first and then {type(directory_or_repo).__name__}"
                )
            path = _resolve(backbone, revision, token)
            if not (path / CONFIG_NAME).is_file() and not (path / TRAINER_WEIGHTS).is_file():
                raise FileNotFoundError(
                    f"{path}: no {CONFIG_NAME} or {TRAINER_WEIGHTS}; expected a model folder written by "
                    "SpatialModel.save_pretrained, a cooper-lib trainer or transformers.Trainer"
                )
            base = folder.read_base(path) or _trainer_record(path).get("base") or {}
            if not base.get("base_model"):
                raise ValueError(
                    f"{path}: records no base model (saved before cooper-lib recorded it); "
                    "call SpatialModel.from_pretrained(backbone, folder, processor)"
                )
            backbone, processor = folder.load_backbone(
                base["base_model"], dtype or base.get("dtype") or "float32", base.get("revision")
            )
        elif processor is None or directory_or_repo is None:
            raise TypeError(
                "from_pretrained: with a backbone, pass the folder or repo id and the processor too"
            )
        else:
            path = _resolve(directory_or_repo, revision, token)
        return cls._load_folder(backbone, processor, path)

    @classmethod
    def _load_folder(cls, backbone: nn.Module, processor: Any, path: Path) -> SpatialModel:
        if not (path / CONFIG_NAME).is_file() and (path / TRAINER_WEIGHTS).is_file():
            record = _trainer_record(path)
            spatial = cls.from_config(backbone, processor, SpatialConfig.from_dict(record["config"]))
            spatial.load_state_dict(record["state"])
            return spatial
        config = SpatialConfig.load(path)
        # The weights are checked inside the attach, before the backbone changes.
        spatial = cls.from_config(backbone, processor, config, state=folder.load_tensors(path / WEIGHTS_NAME))
        if (path / folder.ADAPTER_CONFIG).is_file():
            folder.load_lora(spatial.adapter.model, path)
        elif lora := _old_lora_settings(path):  # an old trainer folder: LoRA in backbone.safetensors
            folder.inject_lora(spatial.adapter.model, lora)
        if (path / folder.BACKBONE_WEIGHTS).is_file():
            spatial._loaded_names |= folder.load_backbone_weights(
                spatial.backbone, path / folder.BACKBONE_WEIGHTS
            )
        return spatial

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
        load `state` (saved additions, as `addition_state_dict` gives them) when given. The backbone
        comes back frozen but the added tokens' rows (`set_backbone_trainable`)."""
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
        spatial.set_backbone_trainable(False)
        return spatial

    def push_to_hub(
        self, repo_id: str, *, private: bool | None = None, token: str | None = None, commit_message: str = ""
    ) -> str:
        """Upload the model folder (as `save_pretrained` writes it) with a model card (``README.md``:
        base model, ``library_name: cooper-lib``, tags, how to load) to a hub repo; returns the commit URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            folder.write_card(Path(tmp), repo_id, list(self.config.modalities))
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


def extra_state_record(state: Any) -> dict[str, Any]:
    """The record `SpatialModel.get_extra_state` encoded (config, base model, dtype)."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise ValueError(
            f"state[{_EXTRA_STATE!r}]: expected a uint8 tensor of JSON bytes, got {type(state).__name__}"
        )
    return json.loads(bytes(state.tolist()).decode())


def _tied_aliases(module: nn.Module) -> dict[str, str]:
    """{alias: kept} for parameters reachable under several names (tied embeddings): the first name is kept."""
    first: dict[int, str] = {}
    aliases = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def _drop_tied_aliases(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict post hook: keep one name per shared tensor (safetensors refuses shared storage)."""
    for alias in _tied_aliases(module):
        state.pop(prefix + alias, None)


def _restore_tied_aliases(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre hook: fill a dropped alias from the name kept, so strict loading works."""
    for alias, kept in _tied_aliases(module).items():
        if prefix + alias not in state and prefix + kept in state:
            state[prefix + alias] = state[prefix + kept]


def _resolve(directory_or_repo: str | Path, revision: str | None, token: str | None) -> Path:
    """A local folder as it is; anything else is a hub repo id, downloaded with `snapshot_download`.
    A path no repo id can be (a `Path`; text that starts with ``/``, ``.`` or ``~`` or has more
    than one ``/``) that names no folder is refused here: the hub would only say the id is malformed."""
    path = Path(directory_or_repo)
    if path.is_dir():
        return path
    text = str(directory_or_repo)
    if isinstance(directory_or_repo, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise FileNotFoundError(
            f"from_pretrained: expected a model folder or a hub repo id ('namespace/name'), got {text!r}, "
            "which is no folder"
        )
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            str(directory_or_repo),
            revision=revision,
            token=token,
            allow_patterns=[CONFIG_NAME, "*.safetensors", "*.json"],
        )
    )


def _trainer_record(path: Path) -> dict[str, Any]:
    """From a plain Trainer's ``model.safetensors``: config, base model record and state ({} without one)."""
    if not (path / TRAINER_WEIGHTS).is_file():
        return {}
    state = folder.load_tensors(path / TRAINER_WEIGHTS)
    if _EXTRA_STATE not in state:
        raise ValueError(
            f"{path / TRAINER_WEIGHTS}: no {_EXTRA_STATE!r} tensor; expected the state dict of a SpatialModel"
        )
    record = extra_state_record(state[_EXTRA_STATE])
    base = {"base_model": record.get("base_model"), "revision": None, "dtype": record.get("dtype")}
    return {"config": record["config"], "base": base, "state": state}


def _old_lora_settings(path: Path) -> dict[str, Any] | None:
    """The LoRA settings an old trainer folder's ``trainable.json`` records (None without)."""
    info = path / folder.TRAINABLE_NAME
    return json.loads(info.read_text()).get("lora") if info.is_file() else None
