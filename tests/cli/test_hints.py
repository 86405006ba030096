"""Hints that fit the problem: each message names what is really wrong and its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.runs import one_line_error


def test_chat_bits_without_cuda_blames_bits_not_device(cli, tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --bits loads there")
    for extra in ([], ["--device", "cpu"], ["--device", "auto"]):
        line = one_line_error(cli("chat", str(tiny_model), "--bits", "4", "--prompt", "hi", *extra),
                              "--bits 4", "needs CUDA", "drop --bits")
        assert "--device cuda" not in line


def test_an_empty_model_path_says_it_is_empty(cli, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n')
    for args in (["chat", "", "--prompt", "hi"], ["check-data", str(tmp_path / "d.jsonl"), "--model", ""]):
        line = one_line_error(cli(*args), "the model path is empty", '"demo"')
        assert "config.json" not in line


UNREADABLE = """
import os, sys
import tunewiz.cli as cli
cli.build_parser()  # imports every command module
import tunewiz.engine.entry_point, tunewiz.engine.check_data, tunewiz.engine.contract.formats, tunewiz.engine.contract.json_records, tunewiz.engine.contract.sources
os.setgid(65534); os.setuid(65534)  # imported first: afterwards nothing but the data is read
sys.exit(cli.main(["check-data", *sys.argv[1:], "--model", "/nowhere"]))
"""


def test_files_that_cannot_be_read_are_not_records_to_fix():
    # In a folder of its own that anyone may enter (pytest's folders are private to root,
    # and the test reads as another user when it runs as root).
    tmp_path = Path(tempfile.mkdtemp(prefix="tunewiz-unreadable-"))
    tmp_path.chmod(0o755)
    try:
        _check_unreadable(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check_unreadable(tmp_path: Path) -> None:
    files = []
    for name in ("a.jsonl", "b.jsonl"):
        f = tmp_path / name
        f.write_text('{"text": "a"}\n')
        f.chmod(0)
        files.append(str(f))
    if os.geteuid() == 0:
        argv = [sys.executable, "-c", UNREADABLE, *files]
    else:
        argv = [sys.executable, "-m", "tunewiz", "check-data", *files, "--model", "/nowhere"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "Permission denied" in res.stderr and "Traceback" not in res.stderr
    assert "permissions" in last and "record" not in last, last
