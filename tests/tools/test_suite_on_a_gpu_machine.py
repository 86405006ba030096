"""`make test` on a GPU machine: the tests written for CPU machines see no GPU there, the
`gpu` tests see the machine's (tests/conftest.py), and the CPU tests' CLI calls are still
served by the warm CLI server (support/warm_cli.py). Checked by running pytest with the
suite's conftest on small test files, with and without an nvidia-smi on PATH."""

import os
import re
import subprocess
import sys
from pathlib import Path

from support.fake_nvidia_smi import fake_nvidia_smi

REPO = Path(__file__).resolve().parents[2]
PROBE = '''
import os
import pytest

@pytest.fixture(scope="module")
def reference_run():
    # What a module's once-per-module training run sees when it starts its process.
    return os.environ.get("CUDA_VISIBLE_DEVICES")

def test_written_for_the_cpu(reference_run):
    print("module-fixture", repr(reference_run))
    print("cpu-tier", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))

@pytest.mark.gpu
def test_on_the_gpu():
    print("gpu-tier", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
'''


# Which CLI calls the warm server answers: a real call from each tier, and the server's count.
PROBE_WARM = '''
import pytest
from support import warm_cli

def _served_by_the_server(cli):
    before = warm_cli._server.served if warm_cli._server else 0
    assert cli("--version").returncode == 0
    return warm_cli._server is not None and warm_cli._server.served == before + 1

def test_written_for_the_cpu(cli):
    print("cpu-call-warm", _served_by_the_server(cli))

@pytest.mark.gpu
def test_on_the_gpu(cli):
    print("gpu-call-warm", _served_by_the_server(cli))
'''


def seen(tmp_path: Path, with_nvidia_smi: bool, probe_text: str = PROBE, cold: bool = True) -> list[str]:
    probe = tmp_path / f"probe-{with_nvidia_smi}-{cold}" / "test_probe.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(probe_text)
    bin_dir = tmp_path / f"bin-{with_nvidia_smi}-{cold}"
    bin_dir.mkdir()
    if with_nvidia_smi:
        fake_nvidia_smi(bin_dir)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    # A real GPU machine's own nvidia-smi (in /usr/bin) is left off PATH too, so the run
    # without one is a CPU machine's wherever this test runs.
    system = [d for d in ("/usr/bin", "/bin") if with_nvidia_smi or not (Path(d) / "nvidia-smi").exists()]
    env.update(PATH=":".join([str(bin_dir), *system]))
    env.pop("TUNEWIZ_TEST_COLD", None)
    if cold:
        env["TUNEWIZ_TEST_COLD"] = "1"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "conftest",
                        "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), str(probe)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return sorted(re.findall(r"(?:cpu-tier|gpu-tier|module-fixture|cpu-call-warm|gpu-call-warm) \S+", r.stdout))   # -q's progress dots share the lines


def test_cpu_tests_see_no_gpu_on_a_gpu_machine_and_gpu_tests_see_it(tmp_path):
    assert seen(tmp_path, with_nvidia_smi=True) == ["cpu-tier ''", "gpu-tier None", "module-fixture ''"]
    # A CPU machine: nothing is changed.
    assert seen(tmp_path, with_nvidia_smi=False) == ["cpu-tier None", "gpu-tier None", "module-fixture None"]


def test_on_a_gpu_machine_the_cpu_tests_cli_calls_are_still_served_warm(tmp_path):
    # The server sees no GPU, as the CPU tests do; a gpu test's call starts a fresh interpreter.
    assert seen(tmp_path, with_nvidia_smi=True, probe_text=PROBE_WARM, cold=False) == \
        ["cpu-call-warm True", "gpu-call-warm False"]
