"""Generation heads: from query hidden states to auxiliary maps."""

from cooper_lib.heads.dense import DENSE_KINDS, DenseHead

__all__ = ["DENSE_KINDS", "DenseHead"]
