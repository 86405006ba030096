"""`make test` on a GPU machine: the tests written for CPU machines see no GPU there, the
`gpu` tests see the machine's (tests/conftest.py). Checked by running pytest with the
suite's conftest on a two-test file, with and without an nvidia-smi on PATH."""

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


def seen(tmp_path: Path, with_nvidia_smi: bool) -> list[str]:
    probe = tmp_path / "probe" / "test_probe.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(PROBE)
    bin_dir = tmp_path / f"bin-{with_nvidia_smi}"
    bin_dir.mkdir()
    if with_nvidia_smi:
        fake_nvidia_smi(bin_dir)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    # A real GPU machine's own nvidia-smi (in /usr/bin) is left off PATH too, so the run
    # without one is a CPU machine's wherever this test runs.
    system = [d for d in ("/usr/bin", "/bin") if with_nvidia_smi or not (Path(d) / "nvidia-smi").exists()]
    env.update(PATH=":".join([str(bin_dir), *system]), TUNEWIZ_TEST_COLD="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "conftest",
                        "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), str(probe)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return sorted(re.findall(r"(?:cpu-tier|gpu-tier|module-fixture) \S+", r.stdout))   # -q's progress dots share the lines


def test_cpu_tests_see_no_gpu_on_a_gpu_machine_and_gpu_tests_see_it(tmp_path):
    assert seen(tmp_path, with_nvidia_smi=True) == ["cpu-tier ''", "gpu-tier None", "module-fixture ''"]
    # A CPU machine: nothing is changed.
    assert seen(tmp_path, with_nvidia_smi=False) == ["cpu-tier None", "gpu-tier None", "module-fixture None"]
