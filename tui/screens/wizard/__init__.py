"""The new-run wizard: one Screen per step, driven by ``flow.run_wizard``."""
