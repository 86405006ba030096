"""Generated scripts are quoted: the Slurm script and the node commands keep every value
from the config or the command line one literal word, wherever it lands (an #SBATCH
line, the batch shell, the `bash -c` srun runs, the line a user pastes on a node)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tunewiz.engine.contract.config import config_from_dict
from tunewiz.engine.distributed import Plan, node_commands, slurm_script
from tunewiz.engine.contract.errors import ConfigError

HOSTILE = "my dir/it's $(touch PWNED) `touch PWNED2` \"q\" #c.yaml"


def plan(nnodes: int = 2, gpus: bool = True) -> Plan:
    return Plan(nproc=4, nnodes=nnodes, node_rank=0, master_addr="10.0.0.1", master_port=29611,
                devices=[0, 1, 2, 3] if gpus else None, join_timeout_s=300)


def sbatch_arguments(line: str) -> list[str]:
    """How sbatch reads the arguments of an #SBATCH line (src/sbatch/opt.c, _get_argument):
    double quotes group, a backslash escapes, an unescaped # ends the line."""
    args, i, rest = [], 0, line[len("#SBATCH"):]
    while i < len(rest):
        while i < len(rest) and rest[i].isspace():
            i += 1
        arg, quoted, escape = "", False, False
        while i < len(rest) and (quoted or not rest[i].isspace()):
            c = rest[i]
            i += 1
            if escape:
                arg, escape = arg + c, False
            elif c == "\\":
                escape = True
            elif c == '"':
                quoted = not quoted
            elif c == "#":
                return args + ([arg] if arg else [])
            else:
                arg += c
        if arg:
            args.append(arg)
    return args


def test_sbatch_lines_keep_names_and_paths_whole(tmp_path):
    out = str(tmp_path / 'runs 50% "x" #1')
    cfg = config_from_dict({"name": "job.v1", "output_dir": out})
    script = slurm_script(str(tmp_path / HOSTILE), cfg, plan())
    lines = {ln.split("=", 1)[0]: ln for ln in script.splitlines() if ln.startswith("#SBATCH")}
    assert sbatch_arguments(lines["#SBATCH --job-name"]) == ["--job-name=job.v1"]
    # %j is Slurm's job id; the folder's own % is doubled so Slurm writes it as one %
    assert sbatch_arguments(lines["#SBATCH --output"]) == [f"--output={out.replace('%', '%%')}/slurm-%j.out"]
    assert sbatch_arguments(lines["#SBATCH --gpus-per-node"]) == ["--gpus-per-node=4"]


def test_the_batch_script_runs_the_config_path_as_one_argument(tmp_path, monkeypatch):
    """Run the script under bash with stand-ins for scontrol, srun and tunewiz: tunewiz
    gets exactly `train <the absolute config path>`, and nothing in the path runs. The path
    is made absolute where the script is written: sbatch may be run from anywhere."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    stubs = {
        "scontrol": "#!/bin/bash\necho node-a\n",
        # srun: drop its own options, run the command
        "srun": "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\nexec \"$@\"\n",
        "tunewiz": f"#!/bin/bash\nprintf '%s\\n' \"NODE_RANK=$NODE_RANK ADDR=$ADDR PORT=$PORT\" \"$@\" > {shlex.quote(str(record))}\n",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    config = f"sub/a line\nbreak/{HOSTILE}"
    script = work / "job.sbatch"
    monkeypatch.chdir(work)
    script.write_text(slurm_script(config, config_from_dict({"name": "job"}), plan()))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NODEID": "1", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "node-[a-b]"}
    monkeypatch.chdir(tmp_path)
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True, timeout=60)
    got = record.read_text().split("\n")[:-1]
    got = got[:2] + ["\n".join(got[2:])]  # the path holds a line break
    assert got == ["NODE_RANK=1 ADDR=node-a PORT=29611", "train", str(work / config)]
    assert not list(tmp_path.rglob("PWNED*"))


def test_a_name_that_is_not_a_word_never_reaches_a_script():
    cfg = config_from_dict({"name": "job"})
    for bad in ("a\nb", "a b", "x\n#SBATCH --wrap=id"):
        cfg.name = bad   # set after validation, as a caller holding a Config could
        with pytest.raises(ConfigError, match="is not a valid run name"):
            slurm_script("c.yaml", cfg, plan())


def test_an_output_dir_with_a_line_break_cannot_be_written_into_a_script():
    cfg = config_from_dict({"name": "job", "output_dir": "runs\n#SBATCH --wrap=id"})
    with pytest.raises(ConfigError, match="output_dir: .* cannot be written into a Slurm script"):
        slurm_script("c.yaml", cfg, plan())


@pytest.mark.parametrize("config", ["my config.yaml", "a\nb.yaml", HOSTILE, "-c.yaml", "plain.yaml"])
def test_node_commands_are_one_word_per_value(config):
    lines = node_commands(config, plan(nnodes=3))
    for k, line in enumerate(lines):
        argv = shlex.split(line)
        assert argv[:2] == ["tunewiz", "train"] and argv[3:] == ["--node-rank", str(k)]
        assert os.path.normpath(argv[2]) == os.path.normpath(config)  # "-c.yaml" is written ./-c.yaml
        assert not argv[2].startswith("-")
    assert lines[0] == "tunewiz train plain.yaml --node-rank 0" or config != "plain.yaml"


def test_print_node_commands_through_the_cli(tmp_path, cli):
    folder = tmp_path / "my configs"
    folder.mkdir()
    cfg = folder / "c.yaml"
    cfg.write_text("name: job\nlayout:\n  nnodes: 2\n")
    r = cli("train", str(cfg), "--print-node-commands")
    assert r.returncode == 0, r.stderr
    assert f"tunewiz train {shlex.quote(str(cfg))} --node-rank 1" in r.stdout
    r = cli("train", str(cfg), "--slurm", "-")
    assert r.returncode == 0, r.stderr
    assert f"exec tunewiz train {shlex.quote(str(cfg))}" in shlex.split(r.stdout.splitlines()[-1])[-1]
    assert Path(str(cfg)).is_file()
