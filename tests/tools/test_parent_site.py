"""tools/parent_site.py: a venv made by a python that is itself in a venv sees that venv's
packages (as a CUDA torch installed into a venv must be seen by make setup's .venv)."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "parent_site.py"


def purelib(env_dir: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))


def plant(env_dir: Path, module: str, value: str) -> None:
    """A one-file module in the venv's site-packages that says where it came from."""
    (purelib(env_dir) / f"{module}.py").write_text(f"WHERE = {value!r}\n")


def where(python: Path, module: str) -> str:
    r = subprocess.run([str(python), "-c", f"import {module}; print({module}.WHERE)"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "missing"


def test_a_venv_made_from_a_venv_python_sees_the_outer_venv_after_its_own(tmp_path):
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    venv.EnvBuilder(with_pip=False).create(outer)
    plant(outer, "only_outside", "outer")
    plant(outer, "in_both", "outer")
    outer_python = outer / "bin" / "python"
    subprocess.run([str(outer_python), "-m", "venv", "--without-pip", "--system-site-packages", str(inner)],
                   check=True)
    plant(inner, "in_both", "inner")
    inner_python = inner / "bin" / "python"
    # What --system-site-packages alone gives: the base python's site, not the outer venv's.
    assert where(inner_python, "only_outside") == "missing"

    r = subprocess.run([str(outer_python), str(TOOL), str(inner)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert where(inner_python, "only_outside") == "outer"
    assert where(inner_python, "in_both") == "inner"          # the venv's own copy comes first


def test_a_base_python_adds_nothing_and_a_missing_venv_is_one_line(tmp_path):
    env_dir = tmp_path / "v"
    venv.EnvBuilder(with_pip=False, system_site_packages=True).create(env_dir)
    base_python = Path(sys.base_prefix) / "bin" / Path(sys.executable).name
    r = subprocess.run([str(base_python), str(TOOL), str(env_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (purelib(env_dir) / "tunewiz-parent-site.pth").exists()

    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a venv" in r.stderr
