"""What the library never does, checked on its source (the parsed syntax, so comments and
docstrings that mention these names do not count): no pickle (no `pickle` / `dill` /
`cloudpickle` / `marshal` / `shelve` import, no `torch.save`, no `torch.load` without
`weights_only=True`, no `np.load(allow_pickle=True)`), no `eval` / `exec`, no `yaml.load` (only
`yaml.safe_load`), and no `trust_remote_code=True` (neither passed nor as a default)."""

import ast
from pathlib import Path

import pytest

import cooper_lib

PACKAGE = Path(cooper_lib.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
PICKLING_MODULES = {"pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str) -> list[str]:
    """Each forbidden construct in `source`, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{line}: imports {n}" for n in names if n.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("eval", "exec"):
                found.append(f"{line}: calls {name}")
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                found.append(f"{line}: calls {name} (use yaml.safe_load)")
            elif name == "torch.save":
                found.append(f"{line}: calls torch.save (pickle; use safetensors)")
            elif name == "torch.load" and not _true(keywords.get("weights_only")):
                found.append(f"{line}: calls torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and _true(keywords.get("allow_pickle")):
                found.append(f"{line}: calls {name} with allow_pickle=True")
            if _true(keywords.get("trust_remote_code")):
                found.append(f"{line}: passes trust_remote_code=True")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            found += [
                f"{line}: trust_remote_code defaults to True"
                for a, d in pairs
                if a.arg == "trust_remote_code" and _true(d)
            ]
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_source_uses_no_pickle_eval_unsafe_yaml_or_remote_code(path):
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "from dill import loads",
        "eval('1')",
        "exec('x = 1')",
        "yaml.load(text)",
        "torch.load('w.pt')",
        "torch.load('w.pt', weights_only=False)",
        "torch.save(state, 'w.pt')",
        "np.load('a.npy', allow_pickle=True)",
        "AutoModel.from_pretrained('x', trust_remote_code=True)",
        "def load(path, *, trust_remote_code=True): pass",
    ],
)
def test_the_check_finds_each_forbidden_construct(snippet):
    assert violations(snippet)


def test_the_check_allows_the_safe_spellings():
    safe = "model.eval()\nyaml.safe_load(t)\ntorch.load('w.pt', weights_only=True)\nf(trust_remote_code=flag)"
    assert violations(safe) == [] and len(SOURCES) > 50
