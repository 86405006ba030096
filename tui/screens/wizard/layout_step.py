"""Step 4, Layout: which GPUs, DeepSpeed stage, and nodes (with the command for each node).

The per-node commands come from the engine's own torch-free planner (what
`tunewiz train CONFIG --print-node-commands` prints); the Slurm script is written by
`tunewiz train CONFIG --slurm FILE`, after the config is saved where the script points.
"""

from __future__ import annotations

import copy
from pathlib import Path


from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Select, SelectionList, Static

from tunewiz.engine.contract.config import DEEPSPEED, Config, check_node_rank
from tunewiz.engine.contract.errors import TunewizError

from ...formatting import styled
from ...services.engine_cli import EngineCommandFailed
from ...services.gpus import Gpu, detect_gpus
from ...widgets.form import FieldRow
from .step import StepInvalid, WizardStep, parse_number


class GpusDetected(Message):
    def __init__(self, gpus: list[Gpu]):
        super().__init__()
        self.gpus = gpus


class CommandsPlanned(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class SlurmWritten(Message):
    def __init__(self, text: str, problem: bool = False):
        super().__init__()
        self.text, self.problem = text, problem


def _short(path: str) -> str:
    """A path relative to the working directory when that is shorter."""
    import os

    relative = os.path.relpath(path)
    return relative if len(relative) < len(path) else path


def node_commands_text(cfg: Config, config_path: str) -> str:
    """The command for every node, from the engine's planner (as --print-node-commands)."""
    from tunewiz.engine.contract.layout_plan import make_plan, node_commands

    if cfg.layout.nnodes <= 1:
        return "one node: nothing to run elsewhere"
    try:
        plan = make_plan(copy.deepcopy(cfg), launching=False)
    except TunewizError as e:
        return e.one_line()
    lines = [f"{plan.nnodes} nodes x {plan.nproc} process(es); node 0 listens on "
             f"{plan.master_addr}:{plan.master_port}. On each node (same config path there):"]
    lines += [f"{line}    # node {k}" for k, line in enumerate(node_commands(config_path, plan))]
    return "\n".join(lines)


def gpus_value(selected: list[int], all_gpus: list[Gpu]):
    """The config's layout.gpus: "all" when every GPU (or none: CPU) is chosen, else the ids."""
    if not all_gpus or sorted(selected) == [g.index for g in all_gpus]:
        return "all"
    return sorted(selected)


class LayoutStep(WizardStep):
    INDEX = 3
    ACTIONS = {"layout-slurm-write": "write_slurm", "layout-slurm": "write_slurm"}  # button, Enter in the file name

    def compose_body(self) -> ComposeResult:
        layout = self.state.config.layout
        with Horizontal(id="layout-panes"):
            with Vertical(id="layout-gpus"):
                yield Static("GPUs on this machine", classes="section-title")
                yield Static("detecting…", id="layout-gpu-note")
                yield SelectionList[int](id="layout-gpu-list")
            with VerticalScroll(id="layout-form"):
                yield FieldRow("DeepSpeed", Select([(d, d) for d in DEEPSPEED], value=layout.deepspeed,
                                                   allow_blank=False, id="layout-deepspeed", compact=True))
                yield FieldRow("nodes", Input(str(layout.nnodes), id="layout-nnodes", compact=True))
                yield FieldRow("this node rank", Input(str(layout.node_rank), id="layout-rank", compact=True))
                yield FieldRow("master address", Input(layout.master_addr, id="layout-addr", compact=True))
                yield FieldRow("master port", Input(str(layout.master_port), id="layout-port", compact=True))
        yield Static(id="layout-commands", markup=False)
        with Horizontal(id="layout-slurm-row"):
            yield Static("Slurm script", classes="inline-label")
            yield Input(self.slurm_default(), id="layout-slurm", compact=True)
            yield Button("write it", id="layout-slurm-write", compact=True)

    def on_mount(self) -> None:
        self.gpus: list[Gpu] = []
        self.query_one("#layout-nnodes", Input).focus()
        self.detect()
        self.show_commands()

    @work(thread=True)
    def detect(self) -> None:
        self.post_message(GpusDetected(detect_gpus()))

    def on_gpus_detected(self, message: GpusDetected) -> None:
        self.gpus = message.gpus
        note = self.query_one("#layout-gpu-note", Static)
        chooser = self.query_one("#layout-gpu-list", SelectionList)
        if not self.gpus:
            note.update("no GPU: training runs on the CPU")
            chooser.display = False
            return
        wanted = self.state.config.layout.gpus
        for gpu in self.gpus:
            chosen = wanted == "all" or (isinstance(wanted, list) and gpu.index in wanted) \
                or (isinstance(wanted, int) and gpu.index < wanted)
            busy = " · in use" if gpu.in_use else ""
            label = f"{gpu.index}: {gpu.name} {gpu.memory_total_gib:.0f} GiB ({gpu.memory_used_mib} MiB used{busy})"
            chooser.add_option((label, gpu.index, chosen))
        note.update(f"{len(self.gpus)} GPU(s); space toggles")

    def slurm_default(self) -> str:
        return str(Path(self.state.default_config_path()).with_suffix(".sbatch"))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "layout-slurm":
            self.show_commands()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.show_commands()

    def on_selection_list_selected_changed(self, event) -> None:
        self.show_commands()

    def show_commands(self) -> None:
        cfg = copy.deepcopy(self.state.config)
        self.read_layout(cfg, strict=False)   # what is on screen now, into a copy
        self.plan_commands(cfg, self.state.default_config_path())

    @work(thread=True, exclusive=True, group="layout-plan")
    def plan_commands(self, cfg: Config, config_path: str) -> None:
        # The planner may ask nvidia-smi for the GPUs: off the UI thread.
        self.post_message(CommandsPlanned(node_commands_text(cfg, config_path)))

    def on_commands_planned(self, message: CommandsPlanned) -> None:
        self.query_one("#layout-commands", Static).update(message.text)

    def write_slurm(self) -> None:
        """Save the config (the script points at it), then let the engine write the script."""
        script = self.query_one("#layout-slurm", Input).value.strip()
        if not script:
            self.say("[b red]give the Slurm script a file name[/]")
            return
        try:
            self.store(strict=True)
            config_path = self.state.save(Path(self.state.default_config_path()))
        except StepInvalid as e:
            self.say(styled((str(e), "bold red")))
            return
        except TunewizError as e:
            self.say(styled((e.one_line(), "bold red")))
            return
        Path(script).parent.mkdir(parents=True, exist_ok=True)
        self.say("writing the Slurm script…")
        self.run_slurm(str(config_path), script)

    @work(exclusive=True, group="layout-slurm")
    async def run_slurm(self, config_path: str, script: str) -> None:
        try:
            async for _ in self.app.engine.stream("train", config_path, "--slurm", script):
                pass
        except (EngineCommandFailed, OSError) as e:
            self.post_message(SlurmWritten(getattr(e, "message", str(e)), problem=True))
            return
        self.post_message(SlurmWritten(f"config saved; sbatch {_short(script)}"))

    def on_slurm_written(self, message: SlurmWritten) -> None:
        self.say(styled((message.text, "bold red" if message.problem else "green")))

    def store(self, strict: bool) -> None:
        self.read_layout(self.state.config, strict)

    def read_layout(self, cfg: Config, strict: bool) -> None:
        layout = cfg.layout
        fields = {"nodes": ("#layout-nnodes", "nnodes"), "this node rank": ("#layout-rank", "node_rank"),
                  "master port": ("#layout-port", "master_port")}
        values = {}
        for label, (selector, attr) in fields.items():
            try:
                values[attr] = parse_number(self.query_one(selector, Input).value, int, label)
            except StepInvalid:
                if strict:
                    raise
        if strict and values.get("nnodes", 1) < 1:
            raise StepInvalid("nodes: at least 1")
        if strict:
            try:
                check_node_rank(values.get("node_rank", 0), values.get("nnodes", 1), "this node rank",
                                "give a rank from 0 to nodes-1")
            except TunewizError as e:
                raise StepInvalid(e.one_line()) from None
        for attr, value in values.items():
            setattr(layout, attr, value)
        layout.master_addr = self.query_one("#layout-addr", Input).value.strip() or "127.0.0.1"
        layout.deepspeed = str(self.query_one("#layout-deepspeed", Select).value)
        if self.gpus:
            selected = list(self.query_one("#layout-gpu-list", SelectionList).selected)
            if strict and not selected:
                raise StepInvalid("choose at least one GPU")
            layout.gpus = gpus_value(selected, self.gpus)
