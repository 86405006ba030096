"""Fixtures for every tier: the tiny model, the CLI, a private data cache, longest tests first.

The helpers themselves live in tests/support/ (a package, imported as `support.*`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from support import warm_cli
from support.cli import run_cli
from support.tiny_model import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tokenized-data caches of this test process go to a folder of its own (each test's data
# lives in its own tmp folder, so caches never cross tests), never the user's cache.
_OWN_DATA_CACHE = None if "TUNEWIZ_DATA_CACHE" in os.environ else tempfile.mkdtemp(prefix="tunewiz-data-cache-")
if _OWN_DATA_CACHE:
    os.environ["TUNEWIZ_DATA_CACHE"] = _OWN_DATA_CACHE
# The tiny model is far too small to gain from threads, and two OpenMP threads on two busy
# cores spin-wait badly (tens of times slower). Tests on the demo model pass their own count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Longest tests first: with `-n` (work stealing) the quick ones fill in around them
    instead of one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Path to a tiny random Llama folder (tokenizer with chat template included)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def pytest_configure(config):
    """Each test process (not an xdist controller) starts its warm CLI server now, so the
    server's imports overlap with collection and the tiny-model build."""
    if not (config.getoption("numprocesses", None) and not hasattr(config, "workerinput")):
        warm_cli.start({**os.environ, "HF_HUB_OFFLINE": "1"})


def pytest_unconfigure(config):
    warm_cli.stop()
    if _OWN_DATA_CACHE:
        shutil.rmtree(_OWN_DATA_CACHE, ignore_errors=True)


@pytest.fixture
def cli():
    return run_cli


# `make test` also runs on GPU machines. There the tests not marked `gpu`, written for the
# CPU machines CI runs on (gloo ranks, answers checked against a CPU reference, "needs a
# GPU" errors, tiny models in many short CLI runs), see no GPU either: CUDA is hidden from
# the processes they start. A test that fakes a GPU machine passes its own environment.
GPU_MACHINE = shutil.which("nvidia-smi") is not None


GPU_MACHINE_DEVICES = os.environ.get("CUDA_VISIBLE_DEVICES")


def _marked_gpu(module) -> bool:
    marks = getattr(module, "pytestmark", [])
    return any(m.name == "gpu" for m in (marks if isinstance(marks, list) else [marks]))


@pytest.fixture(scope="module", autouse=True)
def cpu_modules_see_no_gpu(request):
    """The same for a module's own fixtures (a reference run trained once per module):
    they start before any test's fixture could hide the GPU."""
    if not GPU_MACHINE or _marked_gpu(request.module):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        yield


@pytest.fixture(autouse=True)
def cpu_tests_see_no_gpu(request, monkeypatch):
    if not GPU_MACHINE:
        return
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    elif GPU_MACHINE_DEVICES is None:   # a gpu test in a module hidden as a whole
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", GPU_MACHINE_DEVICES)
