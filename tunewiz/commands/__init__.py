"""The command layer: one module per subcommand, its arguments beside its code.

Each module has ``add_parser(subparsers)`` and ``run(args) -> int``: it parses, calls the
engine with typed values and prints. The engine never sees an argparse Namespace. A module
imports only the standard library at import time (the engine inside ``run``), so building
the parser for `tunewiz --help` stays instant and torch-free.
"""

# subcommand -> module in this package, in the order `tunewiz --help` lists them
SUBCOMMANDS = {
    "new": "new",
    "runs": "runs",
    "attach": "attach",
    "train": "train",
    "stop": "stop",
    "stacks": "stacks",
    "presets": "presets",
    "check-data": "check_data",
    "prepare-data": "prepare_data",
    "import-xtuner": "import_xtuner",
    "convert": "convert",
    "merge": "merge",
    "export": "export",
    "chat": "chat",
    "demo": "demo",
}
