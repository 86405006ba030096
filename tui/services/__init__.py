"""Torch-free helpers the screens use: GPUs, model folders, memory estimates, engine CLI."""
