"""The engine's torch-free contract: the only part of the engine the TUI imports.

What a config is (config), what a run writes and how to read it (events, rundir,
run_listing), the errors a user can cause (errors), the data formats and their readers
(formats, sources, json_records, table_files), the chat templates (templates), how progress
is told (progress_meter) and where fault injection may strike (faults). Nothing here
imports torch, transformers or the TUI: an import-linter contract in `make test` holds it.
"""
