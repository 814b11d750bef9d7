"""The catalog's commands: `labshare instruments ...`."""

from __future__ import annotations

import typer

app = typer.Typer(help="The instrument catalog.", no_args_is_help=True)
