"""What both CLIs share: logging to stderr through rich, and the user-error contract
(one line on stderr, exit code 1, no traceback)."""

from __future__ import annotations

import logging

import typer

from sft.core.errors import exit_on_user_error


def new_app(help: str) -> typer.Typer:
    # pretty_exceptions off: user errors are one line (below), real bugs keep a plain traceback.
    app = typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def _group() -> None:  # keeps the app a command group even while it has a single command
        pass

    return app


def setup_logging(verbose: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        force=True,
    )
    # bitsandbytes (the qlora extra) warns on every CPU import that the optional `kernels` package is missing and
    # then falls back to plain torch: noise in every CPU run, even without --quantize.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def run_app(app: typer.Typer, prog_name: str) -> None:
    """Run a typer app; a :class:`UserError` becomes ``prog: error: message`` on stderr and exit 1."""
    with exit_on_user_error(prog_name):
        app(prog_name=prog_name)
