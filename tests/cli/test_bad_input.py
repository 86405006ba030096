"""Bad input, table-driven, through the real CLI: data, config and command lines.

Every case asserts the exit code (1 for a user error, 2 for usage), exactly one
`tunewiz: error:` line (or argparse's one error line) naming the problem, no traceback,
and what is left on disk: no run directory for a problem caught before one exists, else
one run marked failed whose events end with an error of the expected kind and a `done`.
Most cases fail while the config loads, before any model does, so the table stays cheap.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tunewiz.engine.contract import rundir
from tunewiz.engine.contract.events import read_events

CONV = {"conversation": [{"input": "Who are you?", "output": "I am the assistant."}]}
GOOD = "\n".join(json.dumps(CONV) for _ in range(4)) + "\n"
SHAREGPT = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}


@dataclass
class Case:
    id: str
    argv: list[str] = field(default_factory=lambda: ["train", "{config}"])
    config: dict | str | None = None   # overrides of the base config, or its whole text
    files: dict = field(default_factory=dict)   # name -> text or bytes, beside the config
    data: str = "d.jsonl"             # the data file the base config names
    code: int = 1
    needle: str = ""
    run: str = "none"                 # "none" | "failed:<kind>" | "any" (no claim: not a train case)
    env: dict = field(default_factory=dict)
    xfail: str = ""


def conf(**over) -> dict:
    """Overrides of the base config: `train__lr=-1` sets train.lr."""
    return over


BOMB = ("name: [&a [l,l,l,l,l,l,l,l,l], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b],"
        " &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e],"
        " &g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g], &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]]\n")


def parquet_bytes() -> bytes:
    """A file that starts and ends like Parquet (PAR1) with garbage between."""
    return b"PAR1" + b"\x15\x00" * 40 + struct.pack("<i", 60) + b"PAR1"


CONFIG_CASES = [
    # class 10: ranges, each naming the key's line
    Case("lr negative", config=conf(train__lr=-1e-4), needle="config.yaml:21: train.lr: must be above 0"),
    Case("lr zero", config=conf(train__lr=0), needle="train.lr: must be above 0"),
    Case("lr nan", config="{base}train:\n  lr: .nan\n", needle="train.lr: must be a finite number"),
    Case("lr inf", config="{base}train:\n  lr: .inf\n", needle="train.lr: must be a finite number"),
    Case("lr text nan", config="{base}train:\n  lr: nan\n", needle="train.lr must be a number, got 'nan'"),
    Case("weight_decay negative", config=conf(train__weight_decay=-0.1), needle="train.weight_decay: must be 0 or more"),
    Case("dropout one", config=conf(lora__dropout=1.0), needle="lora.dropout: must be within 0..1"),
    Case("dropout negative", config=conf(lora__dropout=-0.1), needle="lora.dropout: must be within 0..1"),
    Case("max_grad_norm negative", config=conf(train__max_grad_norm=-1.0), needle="train.max_grad_norm: must be above 0"),
    Case("epochs zero", config=conf(train__epochs=0, train__max_steps=None), needle="train.epochs: must be above 0"),
    Case("epochs negative", config=conf(train__epochs=-2), needle="train.epochs: must be above 0"),
    Case("warmup above one", config=conf(train__warmup_ratio=1.5), needle="train.warmup_ratio: must be within 0..1"),
    Case("warmup negative", config=conf(train__warmup_ratio=-0.1), needle="train.warmup_ratio: must be within 0..1"),
    Case("seed negative", config=conf(train__seed=-1), needle="train.seed: must be within 0.."),
    Case("save_total_limit negative", config=conf(train__save_total_limit=-1), needle="train.save_total_limit"),
    Case("batch_size zero", config=conf(train__batch_size=0), needle="train.batch_size: must be at least 1"),
    Case("max_steps zero", config=conf(train__max_steps=0), needle="train.max_steps: must be at least 1"),
    Case("lora alpha zero", config=conf(lora__alpha=0), needle="lora.alpha: must be at least 1"),
    Case("lora target empty", config=conf(lora__target=[]), needle="lora.target: names no module"),
    Case("eval every negative", config=conf(eval__every=-1), needle="eval.every: must be 0 or more"),
    Case("max_new_tokens zero", config=conf(eval__max_new_tokens=0), needle="eval.max_new_tokens"),
    Case("gpus text", config=conf(layout__gpus="0,1"), needle="layout.gpus: '0,1' is not all"),
    Case("gpus duplicate", config=conf(layout__gpus=[0, 0]), needle="layout.gpus"),
    Case("port too big", config=conf(layout__master_port=70000), needle="layout.master_port: must be within 1..65535"),
    Case("join timeout zero", config=conf(layout__join_timeout_s=0), needle="layout.join_timeout_s"),
    Case("template unknown", config=conf(data__template="nope"), needle="data.template: 'nope' is not a template"),
    Case("data entry empty", config=conf(data__files=[""]), needle="data.files: has an empty entry"),
    Case("model path empty", config=conf(model={"path": ""}), needle="model.path: is empty"),
    Case("output_dir empty", config=conf(output_dir=""), needle="output_dir: is empty"),
    Case("output_dir is a file", config=conf(output_dir="{tmp}/afile"), files={"afile": "x"},
         needle="output_dir: '"),
    Case("output_dir under a file", config=conf(output_dir="{tmp}/afile/runs"), files={"afile": "x"},
         needle="is a file, not a folder"),
    Case("cache_dir is a file", config=conf(data__cache_dir="{tmp}/afile"), files={"afile": "x"},
         needle="data.cache_dir:"),
    Case("name with newline", config=conf(name="a\nb"), needle="name: 'a\\nb' is not a valid run name"),
    Case("name with NUL", config=conf(name="a\0b"), needle="is not a valid run name"),
    Case("name with space", config=conf(name="my run"), needle="is not a valid run name"),
    Case("name with slash", config=conf(name="a/b"), needle="is not a valid run name"),
    Case("name too long", config=conf(name="x" * 300), needle="is longer than 223 bytes"),
    Case("name hidden", config=conf(name=".x"), needle="is not a valid run name"),
    # types and syntax
    Case("unknown key", config="{base}train:\n  lrr: 1\n", needle="unknown key train.lrr"),
    Case("wrong type", config=conf(train__batch_size="two"), needle="train.batch_size must be an integer"),
    Case("bool for int", config=conf(train__batch_size=True), needle="train.batch_size must be an integer"),
    Case("not a mapping", config="- a\n- b\n", needle="the config must be a mapping"),
    Case("bad yaml", config="name: [a\n", needle="not valid YAML"),
    Case("two documents", config="name: a\n---\nname: b\n", needle="not valid YAML"),
    Case("python tag", config="name: !!python/object/apply:os.system ['echo x']\n", needle="not valid YAML"),
    Case("not utf-8", config=b"name: \xff\xfe\n", needle="cannot read"),
    # class 9: hostile YAML is cheap and its messages short
    Case("alias bomb", config=BOMB, needle="expand to more than 100,000 values"),
    Case("alias cycle", config="name: &a [*a]\n", needle="an alias names a value that contains it"),
    Case("deep nesting", config="name: " + "[" * 500 + "]" * 500 + "\n", needle="nested more than 64 levels"),
    Case("huge integer", config="train:\n  seed: " + "9" * 5000 + "\n", needle="an integer too long to read"),
    Case("huge value echoed", config="method: " + "x" * 100_000 + "\n", needle="xxx… is not one of full, lora, qlora"),
    Case("bad date", config="name: 2026-13-45\n", needle="config.yaml:1: cannot read this value"),
]

DATA_CASES = [
    Case("missing file", data="absent.jsonl", needle="absent.jsonl", run="failed:data"),
    Case("empty file", files={"d.jsonl": ""}, needle="empty", run="failed:data"),
    Case("malformed jsonl", files={"d.jsonl": GOOD + '{"conversation": [\n'}, needle="d.jsonl:5", run="failed:data"),
    Case("malformed json array", data="d.json", files={"d.json": "[" + json.dumps(CONV) + ",\n{oops}\n]"},
         needle="d.json:2", run="failed:data"),
    Case("missing output", files={"d.jsonl": '{"conversation": [{"input": "a"}]}\n'}, needle="d.jsonl:1",
         run="failed:data"),
    Case("output a number", files={"d.jsonl": '{"conversation": [{"input": "a", "output": 5}]}\n'},
         needle="d.jsonl:1", run="failed:data"),
    Case("conversation not a list", files={"d.jsonl": '{"conversation": "hi"}\n'}, needle="d.jsonl:1",
         run="failed:data"),
    Case("unknown format", files={"d.jsonl": '{"prompt": "a", "completion": "b"}\n'}, needle="format",
         run="failed:data"),
    Case("record not an object", files={"d.jsonl": "[1, 2]\n"}, needle="d.jsonl:1", run="failed:data"),
    Case("sharegpt from a list", files={"d.jsonl": json.dumps(
        {"conversations": [{"from": ["human"], "value": "hi"}, {"from": "gpt", "value": "x"}]}) + "\n"},
        needle="d.jsonl:1", run="failed:data"),
    Case("sharegpt value a dict", files={"d.jsonl": json.dumps(
        {"conversations": [{"from": "human", "value": {"a": 1}}, {"from": "gpt", "value": "x"}]}) + "\n"},
        needle="d.jsonl:1", run="failed:data"),
    Case("openai content a list of ints", files={"d.jsonl": json.dumps(
        {"messages": [{"role": "user", "content": [1, 2]}, {"role": "assistant", "content": "x"}]}) + "\n"},
        needle="d.jsonl:1", run="failed:data"),
    Case("deep nesting", files={"d.jsonl": '{"conversation": ' + "[" * 100_000 + "]" * 100_000 + "}\n"},
         needle="d.jsonl:1", run="failed:data"),
    Case("lone surrogate", files={"d.jsonl": '{"conversation": [{"input": "a\\ud800", "output": "b"}]}\n'},
         needle="d.jsonl:1", run="failed:data"),
    Case("huge integer", files={"d.jsonl": '{"conversation": [{"input": "a", "output": "b"}], "n": '
                                + "9" * 5000 + "}\n"}, needle="d.jsonl:1", run="failed:data"),
    Case("not utf-8", files={"d.jsonl": b'{"conversation": [{"input": "\xff", "output": "b"}]}\n'},
         needle="d.jsonl", run="failed:data"),
    Case("bad parquet", data="d.parquet", files={"d.parquet": parquet_bytes()}, needle="d.parquet",
         run="failed:data"),
    Case("csv missing column", data="d.csv", files={"d.csv": "input,other\na,b\n"}, needle="d.csv",
         run="failed:data"),
    Case("csv unbalanced quote", data="d.csv", files={"d.csv": 'input,output\n"a,b\n'}, needle="d.csv",
         run="failed:data"),
    Case("folder without data", data="empty_dir", files={"empty_dir/": None}, needle="empty_dir",
         run="failed:data"),
    Case("json top-level number", data="d.json", files={"d.json": "5\n"}, needle="d.json", run="failed:data"),
    Case("json array of numbers", data="d.json", files={"d.json": "[1, 2]\n"}, needle="d.json:1",
         run="failed:data"),
    Case("json deep nesting", data="d.json", files={"d.json": "[" * 100_000 + "]" * 100_000},
         needle="d.json", run="failed:data"),
    Case("json huge integer", data="d.json", files={"d.json": '[{"conversation": [], "n": ' + "1" * 5000 + "}]"},
         needle="d.json:1", run="failed:data"),
    Case("NUL byte in a line", files={"d.jsonl": '{"conversation": [{"input": "a", "output": "b"}]}\0\n'},
         needle="d.jsonl:1", run="failed:data"),
    Case("NaN as an answer", files={"d.jsonl": '{"conversation": [{"input": "a", "output": NaN}]}\n'},
         needle="d.jsonl:1", run="failed:data"),
    Case("system a number", files={"d.jsonl": '{"conversation": [{"system": 5, "input": "a", "output": "b"}]}\n'},
         needle="d.jsonl:1", run="failed:data"),
    Case("openai unknown role", files={"d.jsonl": json.dumps(
        {"messages": [{"role": "robot", "content": "a"}, {"role": "assistant", "content": "x"}]}) + "\n"},
        needle="d.jsonl:1", run="failed:data"),
    Case("openai messages empty", files={"d.jsonl": '{"messages": []}\n'}, needle="d.jsonl", run="failed:data"),
    Case("alpaca instruction a list", files={"d.jsonl": '{"instruction": ["a"], "output": "b"}\n'},
         needle="d.jsonl:1", run="failed:data"),
    Case("sharegpt lone surrogate", files={"d.jsonl": json.dumps(
        {"conversations": [{"from": "human", "value": "\ud800"}, {"from": "gpt", "value": "x"}]}) + "\n"},
        needle="d.jsonl:1", run="failed:data"),
    Case("bad arrow", data="d.arrow", files={"d.arrow": b"ARROW1\x00\x00garbage"}, needle="d.arrow",
         run="failed:data"),
    Case("csv chat column not JSON", data="d.csv", files={"d.csv": 'conversation\n"[{not json"\n'},
         needle="d.csv", run="failed:data"),
    Case("tsv ragged row", data="d.tsv", files={"d.tsv": "input\toutput\na\tb\tc\n"}, needle="d.tsv",
         run="failed:data"),
    Case("save_to_disk folder torn", data="saved", files={"saved/": None, "saved/state.json": "{not json",
                                                          "saved/dataset_info.json": "{}"},
         needle="saved", run="failed:data"),
    # class 10, checked once the model is known: the target names what the model has
    Case("lora target matches nothing", config=conf(lora__target=["q_projx"]), files={"d.jsonl": GOOD},
         needle="lora.target: 'q_projx' matches no module of the model", run="failed:config"),
]

CLI_CASES = [
    Case("no config", argv=["train"], code=2, needle="error:", run="any"),
    Case("unknown option", argv=["train", "{config}", "--bogus"], code=2, needle="unrecognized arguments",
         run="any"),
    Case("unknown command", argv=["nosuch"], code=2, needle="invalid choice", run="any"),
    Case("node rank not a number", argv=["train", "{config}", "--node-rank", "x"], code=2, needle="invalid int",
         run="any"),
    Case("chat bits 3", argv=["chat", "demo", "--bits", "3"], code=2, needle="invalid choice", run="any"),
    Case("missing config file", argv=["train", "{tmp}/nope.yaml"], needle="no such config file"),
    Case("config is a folder", argv=["train", "{tmp}"], needle="no such config file"),
    Case("resume nothing", argv=["train", "{config}", "--resume"], needle="to resume"),
    Case("resume unknown run", argv=["--output-dir", "{tmp}/runs", "train", "nosuch-run", "--resume"],
         needle="nosuch-run"),
    Case("node rank out of range", argv=["train", "{config}", "--node-rank", "3"], needle="outside 0..0"),
    Case("NNODES not a number", argv=["train", "{config}", "--print-node-commands"], env={"NNODES": "two"},
         needle="NNODES='two' in the environment", run="any"),
    Case("PORT out of range", argv=["train", "{config}", "--print-node-commands"], env={"PORT": "99999"},
         needle="PORT='99999' in the environment", run="any"),
    Case("slurm script into a folder", argv=["train", "{config}", "--slurm", "{tmp}"],
         needle="cannot write the script (Is a directory)", run="any"),
    Case("slurm script into a missing folder", argv=["train", "{config}", "--slurm", "{tmp}/no/job.sbatch"],
         needle="cannot write the script", run="any"),
    Case("stop unknown run", argv=["--output-dir", "{tmp}/runs", "stop", "nosuch-run"], needle="nosuch-run",
         run="any"),
    Case("check-data missing file", argv=["check-data", "{tmp}/absent.jsonl"], needle="absent.jsonl", run="any"),
    Case("check-data empty source", argv=["check-data", ""], needle="empty", run="any"),
    Case("presets copy unknown", argv=["presets", "copy", "nosuch-preset", "{tmp}/x.yaml"], needle="nosuch-preset",
         run="any"),
    Case("convert unknown run", argv=["--output-dir", "{tmp}/runs", "convert", "nosuch-run", "{tmp}/out"],
         needle="nosuch-run", run="any"),
]

ALL = CONFIG_CASES + DATA_CASES + CLI_CASES


def base_config(tmp: Path, model: Path, data: str) -> dict:
    return {
        "name": "t", "output_dir": str(tmp / "runs"), "model": {"path": str(model)},
        "method": "lora", "stage": "sft",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "data": {"files": [str(tmp / data)], "max_length": 64, "pack": True, "num_proc": 1},
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "lr": 1e-2, "save_every": 2,
                  "gradient_checkpointing": False, "warmup_ratio": 0.0},
        "eval": {"inputs": ["Who are you?"], "every": 0, "max_new_tokens": 4},
    }


def write_case(case: Case, tmp: Path, model: Path) -> Path:
    for name, content in case.files.items():
        target = tmp / name
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    if case.data == "d.jsonl" and "d.jsonl" not in case.files:
        (tmp / "d.jsonl").write_text(GOOD)
    cfg = tmp / "config.yaml"
    if isinstance(case.config, bytes):
        cfg.write_bytes(case.config)
    elif isinstance(case.config, str):
        # a whole text; {base} puts the base config (without its train section) first
        base = base_config(tmp, model, case.data)
        base.pop("train")
        cfg.write_text(case.config.replace("{base}", yaml.safe_dump(base)), encoding="utf-8")
    else:
        data = base_config(tmp, model, case.data)
        for key, value in (case.config or {}).items():
            if isinstance(value, str):
                value = value.replace("{tmp}", str(tmp))
            section, _, leaf = key.partition("__")
            if leaf:
                data.setdefault(section, {})[leaf] = value
            else:
                data[section] = value
        cfg.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return cfg


def params():
    for group, cases in (("config", CONFIG_CASES), ("data", DATA_CASES), ("cli", CLI_CASES)):
        for case in cases:
            marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
            yield pytest.param(case, id=f"{group}: {case.id}", marks=marks)


def test_the_table_is_large_enough():
    ids = [p.id for p in params()]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", params())
def test_bad_input(case: Case, tiny_model, tmp_path, cli):
    cfg = write_case(case, tmp_path, tiny_model)
    argv = [a.replace("{config}", str(cfg)).replace("{tmp}", str(tmp_path)) for a in case.argv]
    r = cli(*argv, cwd=tmp_path, env=case.env, timeout=120)
    assert r.returncode == case.code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if case.code == 2:  # argparse: usage lines, then one error line
        errors = [ln for ln in r.stderr.splitlines() if ": error:" in ln]
    else:
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("tunewiz: error:")]
    assert len(errors) == 1 and case.needle in errors[0], r.stderr[-3000:]
    assert len(errors[0]) < 600, errors[0][:600]
    runs = tmp_path / "runs"
    if case.run == "none":
        assert not runs.exists() or not rundir.list_runs(runs), "a run directory was left behind"
        # the config error is the whole of stderr: one line
        assert r.stderr.strip() == errors[0], r.stderr[-3000:]
    elif case.run.startswith("failed:"):
        found = rundir.list_runs(runs)
        assert len(found) == 1, found
        run = found[0]
        evs = read_events(run / "events.jsonl")
        err = [e for e in evs if e["type"] == "error"]
        assert err and err[-1]["kind"] == case.run.split(":")[1], evs
        assert evs[-1]["type"] == "done" and evs[-1]["status"] == "failed", evs[-3:]
        assert json.loads((run / "state.json").read_text())["status"] == "failed"
        assert not rundir.checkpoints(run)
