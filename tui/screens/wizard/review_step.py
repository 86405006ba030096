"""Step 5, Review: the YAML to be written, the memory it needs against the GPUs (or RAM) and
which setting to change when it will not fit, the command; save or launch."""

from __future__ import annotations

from pathlib import Path

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Input, Static

from tunewiz.engine.contract import auto_batch, layout_plan, memory_estimate
from tunewiz.engine.contract.errors import TunewizError

from ...formatting import styled
from ...services.engine_cli import EngineCommandFailed
from ...services.gpus import detect_gpus
from ...services.model_folders import read_model_facts
from .cuda_fit import cuda_problem
from .step import StepInvalid, WizardStep


class Launched(Message):
    def __init__(self, run: Path | None, problem: str = "", refused: bool = False):
        super().__init__()
        self.run, self.problem = run, problem
        self.refused = refused          # not tried: it cannot train here


class MemoryEstimated(Message):
    """What the memory estimate says for this config (or why there is none), for the step."""

    def __init__(self, text: Content):
        super().__init__()
        self.text = text


class ReviewStep(WizardStep):
    INDEX = 4
    ACTIONS = {"review-save": "action_save"}
    # ctrl+n is named for what it does here (the footer shows one key per action).
    BINDINGS = [Binding("ctrl+s", "save", "save only"), Binding("ctrl+n,ctrl+l", "next", "save & launch")]

    def next_label(self) -> str:
        return "save & launch ⏎"

    def compose_body(self) -> ComposeResult:
        self.state.config_path = self.state.default_config_path()
        with VerticalScroll(id="review-yaml"):
            if self.state.source is not None and self.state.source.unmapped:
                # Above the YAML, so what the imported XTuner config loses is read before launching.
                source = self.state.source
                yield Static(Content.assemble((f"not carried over from {source.path}:", "bold yellow"),
                                              *(f"\n  {line}" for line in source.unmapped_by_line())),
                             id="review-unmapped")
            yield Static(Syntax(self.state.config_text(self.state.config_path), "yaml", theme="ansi_dark",
                                background_color="default"), id="review-text")
        yield Static(id="review-memory")
        yield Static(id="review-command", markup=False)
        with Horizontal(id="review-save-row"):
            yield Static("config file", classes="inline-label")
            yield Input(self.state.config_path, id="review-path", compact=True)
            yield Button("save only", id="review-save", compact=True)

    def on_mount(self) -> None:
        self.show_command()
        self.estimate()
        self.query_one("#step-next", Button).focus()

    @work(thread=True)
    def estimate(self) -> None:
        cfg = self.state.config
        facts = read_model_facts(cfg.model.path)
        gpus = detect_gpus()
        if problem := cuda_problem(cfg, gpus):
            # No estimate for a run that cannot start here: what to do instead.
            text = styled(("no GPU here: ", "bold red"), (problem, "bold red"),
                          " (or save only, for a GPU machine)")
            self.post_message(MemoryEstimated(text))
            return
        try:
            # The GPUs the launch will take, in rank order (the launch's own rule).
            chosen = layout_plan.chosen_gpus(cfg.layout.gpus, gpus) if gpus else []
        except TunewizError as e:
            self.post_message(MemoryEstimated(styled(("layout: ", "bold red"), (e.one_line(), "red"))))
            return
        n_gpus = len(chosen)
        if chosen:
            # Each process has its own GPU: the smallest one bounds them all.
            small = min(chosen, key=lambda g: g.memory_total_mib)
            capacity, device = small.memory_total_gib, f"GPU {small.index}"
        else:
            capacity, device = memory_estimate.ram_gib(), "this machine's RAM"
        world = n_gpus * cfg.layout.nnodes or None
        fit = memory_estimate.check_fit(cfg, facts, n_gpus, capacity, device, world=world)
        total, used = auto_batch.first_gpu_memory(chosen)
        regrouped = auto_batch.regrouped_fit(cfg, fit, facts, n_gpus, total, used, capacity, device, world)
        if fit is None:
            text = styled("memory: unknown for this model (no sizes in its config.json)")
        elif fit.fits:
            text = styled(("memory ", "bold"), fit.estimate.describe(),
                          f"; fits {device} ({capacity:.0f} GiB)" if capacity else "")
        elif regrouped is not None:
            # The run regroups the batch the same way when it starts: it will train.
            text = styled(("memory ", "bold"), regrouped.estimate.describe(),
                          f"; fits {device} ({capacity:.0f} GiB) as train.auto_batch regroups it")
        else:
            text = styled(("won't fit: ", "bold red"), (fit.shortfall(), "red"), "\n",
                          ("change: ", "bold"), (fit.remedy(), "bold"))
        if fit is not None:
            text = styled(text, "\n", auto_batch.preview(cfg, facts, n_gpus, total, used, world=world))
        data = memory_estimate.estimate_data(cfg.data.files).short()
        self.post_message(MemoryEstimated(styled(text, "\n", data)))

    def on_memory_estimated(self, message: MemoryEstimated) -> None:
        self.query_one("#review-memory", Static).update(message.text)

    def show_command(self) -> None:
        path = self.query_one("#review-path", Input).value.strip()
        self.query_one("#review-command", Static).update(f"$ tunewiz train {path} --detach")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show_command()

    def write_config(self) -> Path:
        path = Path(self.query_one("#review-path", Input).value.strip())
        if not path.name:
            raise StepInvalid("give the config a file name")
        try:
            return self.state.save(path)
        except TunewizError as e:
            raise StepInvalid(e.one_line()) from None

    def store(self, strict: bool) -> None:
        self.state.config_path = self.query_one("#review-path", Input).value.strip()

    def action_save(self) -> None:
        try:
            path = self.write_config()
        except StepInvalid as e:
            self.say(styled((str(e), "bold red")))
            return
        self.say(styled((f"saved {path}", "green"), f"  start it with: tunewiz train {path} --detach"))

    def action_next(self) -> None:
        try:
            path = self.write_config()
        except StepInvalid as e:
            self.say(styled((str(e), "bold red")))
            return
        self.say("launching…")
        self.query_one("#step-next", Button).disabled = True
        self.launch(path)

    @work(thread=True, exclusive=True, group="launch")
    def launch(self, path: Path) -> None:
        # Checked here, not only in the estimate: Enter may come before that has answered.
        if problem := cuda_problem(self.state.config, detect_gpus()):
            self.post_message(Launched(None, problem, refused=True))
            return
        try:
            self.post_message(Launched(self.app.engine.launch(path)))
        except (EngineCommandFailed, OSError) as e:
            self.post_message(Launched(None, getattr(e, "message", str(e))))

    def on_launched(self, message: Launched) -> None:
        if message.run is None:
            self.query_one("#step-next", Button).disabled = False
            what = message.problem if message.refused else f"launch failed: {message.problem}"
            self.say(styled((what, "bold red")))
            return
        self.state.run = message.run
        self.dismiss("next")

