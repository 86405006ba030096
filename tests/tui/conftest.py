"""Fixtures the TUI tests share."""

from __future__ import annotations

import pytest

from tunewiz.engine.demo import write_sample_datasets


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory holding the sample data sets (for the wizard's Dataset step),
    with the fake engine set to a short, quick run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAKE_ENGINE_STEPS", "12")
    monkeypatch.setenv("FAKE_ENGINE_DELAY", "0.01")
    write_sample_datasets(tmp_path / "data", "Alice")
    return tmp_path
