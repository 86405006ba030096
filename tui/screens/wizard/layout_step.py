"""Step 4, Layout: which GPUs, DeepSpeed stage, and nodes (with the command for each node)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Select, SelectionList, Static

from tunewiz.engine.config import DEEPSPEED

from ...services.gpus import Gpu, detect_gpus
from ...widgets.form import FieldRow
from .step import StepInvalid, WizardStep, parse_number


class GpusDetected(Message):
    def __init__(self, gpus: list[Gpu]):
        super().__init__()
        self.gpus = gpus


def node_commands(config_path: str, nnodes: int) -> list[str]:
    """What to type on every other node: the same config, that node's rank."""
    return [f"tunewiz train {config_path} --node-rank {rank}" for rank in range(1, nnodes)]


def gpus_value(selected: list[int], all_gpus: list[Gpu]):
    """The config's layout.gpus: "all" when every GPU (or none: CPU) is chosen, else the ids."""
    if not all_gpus or sorted(selected) == [g.index for g in all_gpus]:
        return "all"
    return sorted(selected)


class LayoutStep(WizardStep):
    INDEX = 3

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

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show_commands()

    def show_commands(self) -> None:
        try:
            nnodes = int(self.query_one("#layout-nnodes", Input).value)
        except ValueError:
            nnodes = 1
        panel = self.query_one("#layout-commands", Static)
        if nnodes <= 1:
            panel.update("one node: nothing to run elsewhere")
            return
        config_path = self.state.config_path or f"configs/{self.state.config.name}.yaml"
        lines = ["on every other node (same config file there):", *node_commands(config_path, nnodes)]
        panel.update("\n".join(lines))

    def store(self, strict: bool) -> None:
        layout = self.state.config.layout
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
        if strict and not 0 <= values.get("node_rank", 0) < values.get("nnodes", 1):
            raise StepInvalid("this node rank: must be between 0 and nodes-1")
        for attr, value in values.items():
            setattr(layout, attr, value)
        layout.master_addr = self.query_one("#layout-addr", Input).value.strip() or "127.0.0.1"
        layout.deepspeed = str(self.query_one("#layout-deepspeed", Select).value)
        if self.gpus:
            selected = list(self.query_one("#layout-gpu-list", SelectionList).selected)
            if strict and not selected:
                raise StepInvalid("choose at least one GPU")
            layout.gpus = gpus_value(selected, self.gpus)
