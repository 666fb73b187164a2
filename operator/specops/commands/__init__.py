"""Subcommands of ``specops``: one module per command, each with ``register(subparsers)``."""
