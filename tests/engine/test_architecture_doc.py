"""docs/architecture.md stays true: every file it names exists, and the names it sends a
reader to are defined where it says."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")

# (file, name) pairs the "Where does X go?" answers rely on
WHERE = [
    ("engine/contract/formats.py", "_PARSERS"), ("engine/contract/formats.py", "def detect_format"),
    ("engine/contract/config.py", "DataFormat = Literal"), ("engine/contract/templates.py", "Template("),
    ("tui/screens/wizard/step.py", "class WizardStep"), ("tui/screens/wizard/state.py", "class WizardState"),
    ("engine/contract/events.py", "SCHEMA:"), ("engine/contract/events.py", "OPTIONAL:"),
    ("engine/contract/events.py", "def emit"), ("engine/contract/run_summary.py", "class RunSummary"),
    ("tunewiz/commands/__init__.py", "SUBCOMMANDS"), ("engine/backends.py", "class SingleBackend"),
    ("engine/backends.py", "class DDPBackend"), ("engine/backends.py", "class DeepSpeedBackend"),
    ("engine/backends.py", "def make_backend"), ("engine/contract/rundir.py", "def output_plan"),
    ("engine/contract/rundir.py", "def run_info"), ("engine/entry_point.py", "def run_entry"),
    ("engine/contract/memory_estimate.py", "def estimate"), ("engine/contract/auto_batch.py", "def choose"),
    ("engine/contract/model_card.py", "def "), ("engine/saved_tokenizer.py", "def "),
]


def test_every_file_the_page_names_exists():
    named = set(re.findall(r"`((?:engine|tui|tunewiz|tests)/[\w/.]+)`", DOC))
    assert len(named) > 15
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, missing


def test_each_answer_points_at_a_real_definition():
    for path, name in WHERE:
        assert f"`{path}`" in DOC or f"`{Path(path).name}`" in DOC, path
        assert name in (REPO / path).read_text(encoding="utf-8"), (path, name)
