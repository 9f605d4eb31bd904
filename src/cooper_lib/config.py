"""`SpatialConfig`: what `add_spatial_heads` attached, as a dataclass that round-trips through JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cooper_lib.modalities import (
    DepthModality,
    Modality,
    ModalityCodec,
    available_modalities,
    get_modality,
    tags_only_modality,
)
from cooper_lib.modalities.depth import check_display_range
from cooper_lib.serialization import check_fields, from_dict, read_json, to_dict

CONFIG_NAME = "cooper_config.json"
QUERY_SOURCES = ("learned", "image")
"""`SpatialConfig.query_source` values."""


@dataclass(frozen=True)
class ModalitySpec:
    """How one auxiliary modality is asked for in text: its tag pair and COOPER's instruction.

    A registered `Modality` carries its defaults (COOPER's for the built-ins); a config's ``tags``
    override them."""

    open_tag: str
    close_tag: str
    instruction: str


@dataclass
class SpatialConfig:
    """Everything needed to rebuild the spatial additions on a backbone.

    Attributes:
        modalities: auxiliary modalities to attach, in order: registered modality names
            (`cooper_lib.modalities.available_modalities()`), or names `tags` defines (attached as
            depth-like maps, the rule of configs saved before modalities were objects).
        head: generation head type (a name from `cooper_lib.heads.head_names()`) for every modality,
            or a dict naming one for each modality, e.g. `{"depth": "flow", "segmentation": "dense"}`.
        query_grid: (rows, cols) of perception queries per block; K = rows * cols.
        query_source: what a query block starts from. ``"learned"``: the K learned queries alone.
            ``"image"``: each query also adds its cell of the row's first image (that image's
            visual tokens, a square block, average-pooled to `query_grid`; `cooper_lib.query_seeds`),
            so the heads read the photo without the backbone first learning to gather it: on the
            Table 1 experiment's tiny backbone, learned queries drew the training scenes' average
            map while seeded ones drew what the vision tower sees (benchmarks/query_route.py).
        output_size: (height, width) of the maps the heads produce.
        num_classes: segmentation classes.
        depth_mode: `"metric"` (metres, SILog keeps scale) or `"relative"` (scale-and-shift invariant).
        depth_display_range: (near, far) metres a metric depth map shown to the model spreads over
            the Spectral table (farther clamps), as COOPER draws each data set over its own range
            (NYU 0-10 m, Hypersim 0-65 m); None: `cooper_lib.modalities.depth.DISPLAY_RANGE`
            (0-20 m). Give the SFT traces' maps the same range (`write_dataset`'s
            ``depth_display_range``): the model reads depth from these colours.
        tags: per modality, overrides of the tag pair and instruction.
        query_token: the placeholder token repeated K times after a tag.
        head_width: channel width of the dense decoder.
        head_options: options of non-dense heads (tokenizer, sampler settings), JSON-serialisable.
            Keys that name a modality hold a dict of options for that modality's head alone; the
            other keys go to every modality's head (see `cooper_lib.heads.options`).
        aux_loss_weights: per-modality weight of the auxiliary loss.
        lm_loss_weight: weight of the language-model loss when labels are given.
        silog_lambda: variance weight of the SILog depth loss.
        dice_weight: weight of the Dice term in the segmentation loss.
        backbone_model_type, hidden_size, added_tokens: recorded at attach time, checked at load.
    """

    modalities: tuple[str, ...] = ("depth", "segmentation")
    head: str | dict[str, str] = "dense"
    query_grid: tuple[int, int] = (8, 8)
    query_source: str = "learned"
    output_size: tuple[int, int] = (64, 64)
    num_classes: int = 150
    depth_mode: str = "metric"
    depth_display_range: tuple[float, float] | None = None
    tags: dict[str, ModalitySpec] = field(default_factory=dict)
    query_token: str = "<|perception_query|>"
    head_width: int = 128
    head_options: dict[str, Any] = field(default_factory=dict)
    aux_loss_weights: dict[str, float] = field(default_factory=dict)
    lm_loss_weight: float = 1.0
    silog_lambda: float = 0.85
    dice_weight: float = 1.0
    backbone_model_type: str | None = None
    hidden_size: int | None = None
    added_tokens: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)  # the types of `cooper_lib.serialization`: (2.5, 2) is no query_grid
        self.validate()

    # ------------------------------------------------------------------ HF config contract
    def attach_backbone_config(self, backbone_config: Any) -> None:
        """Read the attributes this config does not define from `backbone_config` (`SpatialModel`
        calls it): Hugging Face tools such as ``transformers.Trainer`` and ``trl.GRPOTrainer``
        read ``model.config.get_text_config()``, ``model.config._name_or_path``,
        ``model.config._attn_implementation``, ... and those are the backbone's. The backbone's
        config is not part of this config's fields: it is neither saved nor compared."""
        self.__dict__["_backbone_config"] = backbone_config

    def get_text_config(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's text config (`attach_backbone_config`); AttributeError before one is attached."""
        return self.__getattr__("get_text_config")(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # only called for names the dataclass does not define
        backbone = self.__dict__.get("_backbone_config")
        if name.startswith("__") or backbone is None:
            raise AttributeError(
                f"'SpatialConfig' object has no attribute {name!r} (attributes it does not define are "
                "read from the backbone's config once a SpatialModel holds it)"
            )
        return getattr(backbone, name)

    @property
    def num_queries(self) -> int:
        """K, the perception queries per request: rows x cols of `query_grid`."""
        return self.query_grid[0] * self.query_grid[1]

    def head_for(self, modality: str) -> str:
        """The head type of `modality`: `head` itself, or its entry when `head` is per modality."""
        return self.head[modality] if isinstance(self.head, dict) else self.head

    def modality(self, name: str) -> Modality:
        """The `Modality` of `name`: the registered one, or for a name only `tags` defines, a
        depth-like one (`cooper_lib.modalities.tags_only_modality`)."""
        if name in available_modalities():
            return get_modality(name)
        if name in self.tags:
            return tags_only_modality(name)
        raise ValueError(
            f"modality: expected a registered modality {available_modalities()} or one of tags "
            f"{sorted(self.tags)}, got {name!r}"
        )

    def spec(self, modality: str) -> ModalitySpec:
        """Tag pair and instruction for `modality` (user overrides first, then the modality's own)."""
        if modality in self.tags:
            return self.tags[modality]
        found = self.modality(modality)
        if not found.has_tags:
            raise ValueError(
                f"tags: modality {modality!r} defines no tool tags; give them in tags={{{modality!r}: ModalitySpec(...)}}"
            )
        return ModalitySpec(found.open_tag, found.close_tag, found.instruction)

    def validate(self) -> None:
        """Raise ValueError / TypeError naming the first field that holds an unusable value."""
        known = sorted(set(available_modalities()) | set(self.tags))
        if not self.modalities:
            raise ValueError("modalities: expected at least one modality, got an empty sequence")
        for name in self.modalities:
            if name not in known:
                raise ValueError(f"modalities: expected names from {known}, got {name!r}")
            self.spec(name)
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: expected distinct names, got {list(self.modalities)}")
        # Head names are checked where heads are registered (`cooper_lib.heads.build_head`), which
        # `add_spatial_heads` runs before it changes anything; the config only checks the shape.
        if isinstance(self.head, dict):
            if set(self.head) != set(self.modalities):
                raise ValueError(
                    f"head: a per-modality dict must name one head for each of {list(self.modalities)}, "
                    f"got keys {sorted(self.head)}"
                )
            for name, value in self.head.items():
                if not isinstance(value, str):
                    raise TypeError(f"head: expected a head name for {name!r}, got {type(value).__name__}")
        elif not isinstance(self.head, str):
            raise TypeError(
                f"head: expected a head name or a dict {{modality: name}}, got {type(self.head).__name__}"
            )
        if not isinstance(self.head_options, dict):
            raise TypeError(f"head_options: expected a dict, got {type(self.head_options).__name__}")
        if len(self.query_grid) != 2 or min(self.query_grid) < 1:
            raise ValueError(f"query_grid: expected two positive ints (rows, cols), got {self.query_grid}")
        if self.query_source not in QUERY_SOURCES:
            raise ValueError(
                f"query_source: expected one of {list(QUERY_SOURCES)}, got {self.query_source!r}"
            )
        if len(self.output_size) != 2 or min(self.output_size) < 1:
            raise ValueError(
                f"output_size: expected two positive ints (height, width), got {self.output_size}"
            )
        if self.depth_mode not in ("metric", "relative"):
            raise ValueError(f"depth_mode: expected 'metric' or 'relative', got {self.depth_mode!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int, got {self.num_classes}")
        if self.depth_display_range is not None:
            self.depth_display_range = check_display_range(self.depth_display_range, "depth_display_range")
            if self.depth_mode == "relative":
                raise ValueError(
                    "depth_display_range: relative depth is drawn over each map's own range; "
                    f"expected None with depth_mode='relative', got {self.depth_display_range}"
                )
        tag_strings = [s for m in self.modalities for s in (self.spec(m).open_tag, self.spec(m).close_tag)]
        tag_strings.append(self.query_token)
        if len(set(tag_strings)) != len(tag_strings):
            raise ValueError(f"tags: expected distinct tag and query-token strings, got {tag_strings}")

    def display_codec(self, modality: str) -> ModalityCodec:
        """The codec that draws `modality`'s maps shown to the model: the modality's display codec,
        over `depth_display_range` for a metric depth map when one is set."""
        found = self.modality(modality)
        options: dict[str, Any] = {"num_classes": self.num_classes, "depth_mode": self.depth_mode}
        if isinstance(found, DepthModality) and self.depth_display_range is not None:
            options["value_range"] = self.depth_display_range
        return found.display_codec(**options)

    def aux_weight(self, modality: str) -> float:
        """Weight of `modality`'s auxiliary loss in the total (`aux_loss_weights`, default 1)."""
        return float(self.aux_loss_weights.get(modality, 1.0))

    # --------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples as lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpatialConfig:
        """The config `to_dict` wrote; unknown keys raise ValueError (a typo never passes)."""
        return from_dict(cls, data)

    def save(self, directory: str | Path) -> Path:
        """Write `cooper_config.json` into `directory`; returns its path."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SpatialConfig:
        """Read the `cooper_config.json` of a folder written by `save` / `save_pretrained`; a
        missing file is FileNotFoundError, a corrupt one or a bad value a ValueError / TypeError
        naming the file (and the field)."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no {CONFIG_NAME}; expected a folder written by save_pretrained")
        return from_dict(cls, read_json(path), where=f"{path}: SpatialConfig")
