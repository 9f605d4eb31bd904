"""The built wheel installs beside an existing torch, keeps it, imports, and runs the quickstart.

Slow (builds a wheel, makes a venv, trains a few steps): ``pytest -m slow tests/test_packaging.py``.
Nothing is downloaded: the wheel is built without isolation and installed with ``--no-index``, its
dependencies taken from the environment that runs the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str | Path, cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_beside_existing_torch_and_runs_the_quickstart(tmp_path):
    pytest.importorskip("build")
    import torch

    _run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", tmp_path / "dist", ROOT)
    (wheel,) = (tmp_path / "dist").glob("cooper_lib-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # "beside an existing torch": the environment running this test (itself possibly a venv) is
    # the existing install; the new venv sees its packages after its own.
    (site / "existing_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # venv seeds an old setuptools that would shadow the existing one (torch requires >= 77)
    _run(python, "-m", "pip", "uninstall", "-y", "-q", "setuptools", env=env)
    _run(python, "-m", "pip", "install", "--no-index", "--no-build-isolation", wheel, env=env)

    probe = "import torch, cooper_lib; print(torch.__file__); print(torch.__version__); print(cooper_lib.__file__)"
    torch_file, torch_version, package_file = _run(python, "-c", probe, cwd=tmp_path, env=env).split()
    assert (torch_file, torch_version) == (torch.__file__, torch.__version__)  # the same torch, kept
    assert Path(package_file).is_relative_to(site)  # the wheel's copy, not the source tree

    out = tmp_path / "quickstart_out"
    _run(python, ROOT / "examples" / "quickstart.py", "--steps", "3", "--out", out, cwd=tmp_path, env=env)
    assert any(out.iterdir())
