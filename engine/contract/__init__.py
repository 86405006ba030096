"""The engine's torch-free contract: the only part of the engine the TUI imports.

What a config is (config), what a run writes and how to read it (events, rundir,
run_listing), the errors a user can cause (errors), the data formats and their readers
(formats, sources, json_records, table_files), the chat templates (templates), what a chat
loads and how it answers (chat_options), how progress is told (progress_meter) and where
fault injection may strike (faults). What the wizard and
the engine must judge alike: the GPUs a run may use (gpus), how it spreads over processes
and nodes (layout_plan), what a model folder holds (model_facts), the presets
(preset_catalog) and the demo's sample sets (samples). Nothing here imports torch,
transformers, textual, the TUI or the rest of the engine: the import-linter contracts in
pyproject.toml, checked first by `make test`, hold it.
"""
