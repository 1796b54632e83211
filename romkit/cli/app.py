"""The `romkit` command: global options, command registration and the single error handler."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

import typer

import romkit.cli as cli_pkg
from romkit import __version__
from romkit.cli.output import out
from romkit.errors import EXIT_FAILURE, RomkitError

app = typer.Typer(
    name="romkit",
    help="Fetch, prepare, flash and verify MediaTek (MT6589 / Lenovo S820) firmware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"romkit {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    json_: bool = typer.Option(False, "--json", help="Machine-readable JSON output."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and detailed progress."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    out.json = json_
    out.debug = debug


def _register_all() -> None:
    """Every `romkit/cli/<name>.py` that defines `register(app)` contributes its commands."""
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda i: i.name):
        if info.name in ("app", "output") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"romkit.cli.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every outcome into one exit code.

    Typer/click handle their own usage errors (exit 2, with a usage line); everything romkit
    raises on purpose becomes "error: … / hint: …" and the error's exit code; anything else is
    an internal error shown in one line (traceback only with --debug).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    out.debug = out.debug or "--debug" in args
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="romkit")
    except RomkitError as exc:
        out.error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        out.close_bars()
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        out.close_bars()
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
        if out.debug:
            traceback.print_exc()
        else:
            typer.echo("hint: run again with --debug and report the traceback", err=True)
        sys.exit(EXIT_FAILURE)
    finally:
        out.close_bars()
