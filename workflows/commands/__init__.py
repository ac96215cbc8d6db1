"""Subcommands of the ``avrsp`` CLI, one module each."""
