"""The `Example:` sections of the top-level entry points run as written (doctest)."""

import doctest
import importlib

import pytest

MODULES = [
    "cooper_lib.attach",
    "cooper_lib.model",
    "cooper_lib.modalities.registry",
    "cooper_lib.modalities.visualize",
    "cooper_lib.training.rewards",
    "cooper_lib.training.trl_rewards",
    "cooper_lib.training.stage1",
    "cooper_lib.training.sft",
    "cooper_lib.training.grpo",
    "cooper_lib.reasoning.reasoner",
    "cooper_lib.eval.runner",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
