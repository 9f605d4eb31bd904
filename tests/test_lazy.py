import importlib
import subprocess
import sys

import pytest

import cooper_lib
from cooper_lib.lazy import lazy_exports


def test_lazy_exports_resolve_on_first_access_and_cache():
    namespace: dict = {}
    getattr_, dir_ = lazy_exports("json", {"dumps": "json", "decoder": None}, namespace)
    import json
    import json.decoder

    assert getattr_("dumps") is json.dumps
    assert namespace["dumps"] is json.dumps
    assert getattr_("decoder") is json.decoder
    assert dir_() == ["decoder", "dumps"]
    with pytest.raises(AttributeError, match="'json' has no attribute 'loads'"):
        getattr_("loads")


def test_package_dir_lists_lazy_names():
    assert set(cooper_lib.__all__) <= set(dir(cooper_lib))
    training = importlib.import_module("cooper_lib.training")
    assert "SpatialGRPOTrainer" in dir(training)


def test_import_cooper_lib_imports_nothing_heavy():
    code = (
        "import sys, cooper_lib, cooper_lib.training, cooper_lib.eval, cooper_lib.reasoning\n"
        "from cooper_lib.experiments.table1 import Table1Config\n"
        "print(sorted(m for m in ('torch', 'transformers', 'timm', 'torchvision', 'peft', 'accelerate')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_building_the_model_layer_does_not_import_timm_or_a_modeling_module():
    code = (
        "import sys, cooper_lib.model\n"
        "print(sorted(m for m in sys.modules if m == 'timm' or m.startswith('transformers.models.')"
        " and '.modeling_' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
