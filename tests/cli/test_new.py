"""`tunewiz new FILE`: a file the wizard cannot start from is one line naming the file, the
line and the fix, with exit 1, before the interface takes over the terminal."""

from __future__ import annotations

import pytest

from support.xtuner_configs import QLORA_ALPACA, line_of

BROKEN = QLORA_ALPACA.replace("max_length = 1024", "max_length = = 1024")
CASES = {
    "syntax": ("cfg.py", BROKEN, f"cfg.py:{line_of(BROKEN, 'max_length = =')}: not valid Python"),
    "no-xtuner": ("script.py", "import os\nprint(os.getcwd())\n", "script.py:1: not an XTuner config"),
    "refused-value": ("lr.py", QLORA_ALPACA.replace("lr = 1e-4", "lr = 0"),
                      f"lr.py:{line_of(QLORA_ALPACA, 'lr = 1e-4')}: lr = 0 cannot be used"),
    "bad-yaml-key": ("my.yaml", "name: x\ntrian:\n  lr: 1\n", "my.yaml:2: unknown key trian"),
    "other-file": ("notes.txt", "hello\n", "notes.txt: not an XTuner config (.py) or a tunewiz config (.yaml)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_start_file_is_one_line_and_exit_1(cli, tmp_path, case):
    name, text, said = CASES[case]
    (tmp_path / name).write_text(text, encoding="utf-8")
    r = cli("new", name, cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""  # the interface never opened
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert said in lines[0] and "(" in lines[0].split(said, 1)[1], lines[0]  # and a fix after it


def test_a_missing_start_file_says_so(cli, tmp_path):
    r = cli("new", "nope.py", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["tunewiz: error: nope.py: no such file (give the XTuner config "
                                             "(.py) to import)"]
