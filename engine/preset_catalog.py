"""The presets, for the engine's and the CLI's side: the catalog lives in contract.preset_catalog,
which the wizard reads too."""

from .contract.preset_catalog import copy_preset, describe, list_presets, preset_dir  # noqa: F401
