"""Generation heads: from query hidden states to auxiliary maps, chosen by `add_spatial_heads(head=...)`."""

from cooper_lib.heads.base import MAP_KINDS, PerceptionHead, build_head, head_names, map_kind, register_head
from cooper_lib.heads.dense import DenseHead

__all__ = ["MAP_KINDS", "DenseHead", "PerceptionHead", "build_head", "head_names", "map_kind", "register_head"]
