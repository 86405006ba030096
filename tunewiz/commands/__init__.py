"""The command layer: one module per subcommand, its arguments beside its code.

Each module has ``add_parser(subparsers)`` and ``run(args) -> int``: it parses, calls the
engine with typed values and prints. The engine never sees an argparse Namespace.
"""
