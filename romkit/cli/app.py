"""The `romkit` command: global options, lazy command loading and the single error handler.

Why lazy: a technician types `romkit --version`, `romkit explain 4032` or `romkit checksum`
and should not wait for the flash engine, the simulator, numpy, py7zr and requests to load.
The root group below therefore knows every command only by name, module and one-line help
(`COMMANDS`); a command's module is imported when that command runs (or its own `--help` is
asked for), never for `romkit --help`, `--version` or shell completion of command names.

Registering a new command module
--------------------------------
1. Write `romkit/cli/<module>.py` with a function `register(app: typer.Typer) -> None` that
   adds the module's commands to `app` (`app.command("name")(fn)` or
   `app.add_typer(group, name="name")`), exactly as before.
2. Add one `Cmd("<name>", "<module>", "<one-line help>")` row per command it registers to
   `COMMANDS` below, in the order `romkit --help` should list them. The help text must equal
   the first line of the command's docstring (a group's `help=`); tests/test_cli_shell.py
   checks this and that every module with a `register()` has its rows, so a forgotten row
   fails the suite instead of silently hiding the command. For romkit/cli/modem.py with
   `app.command("modem")(modem_cmd)` whose docstring starts "Name modem files for a build.",
   the row is `Cmd("modem", "modem", "Name modem files for a build.")`.
3. Keep heavy imports (numpy, py7zr, requests, serial, romkit.sim/flash/fetch) out of the
   module level of anything `romkit --version` imports; inside a command module they are fine,
   since the module loads only when its command runs.

Print only through `romkit.cli.output.out` (see its module docstring): `out.result` for the
result, `out.progress` as the library's progress callback (bars that end as one line per item),
`out.table` for a closing summary, `out.warn` / `out.note` for remarks.

Options get readable metavars automatically (`--port PORT`, `[FOLDER]`); give `metavar=` only
where a better word exists (`--dest DIR`). Give every command an `Example:` line in its
docstring; the test checks that too.

Errors and Ctrl-C (the contract every command gets for free)
------------------------------------------------------------
- `RomkitError` → `error:` + `hint:` on stderr, the error's exit code; with `--json` also the
  error's `to_dict()` document on stdout.
- click usage errors (unknown option, bad value, missing argument) and pydantic
  `ValidationError`s raised while a command turns its options into a request model → the same
  shape as `romkit.errors.UsageError` (exit 2).
- Ctrl-C → one `interrupted:` line (exit 130). Library or command code that knows what was
  left undone raises `romkit.errors.Interrupted(message, left=..., resume=...)` from its
  `except KeyboardInterrupt:` block; `left` is shown after the message and `resume` becomes the
  `hint:` line (and all of it goes into the `--json` document).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from romkit import __version__
from romkit.cli.output import out
from romkit.errors import EXIT_FAILURE, EXIT_INTERRUPTED, Interrupted, RomkitError, UsageError


@dataclass(frozen=True)
class Cmd:
    """One top-level command: its name, the `romkit.cli` module that registers it, its help."""

    name: str
    module: str
    help: str


COMMANDS: tuple[Cmd, ...] = (
    Cmd("demo", "demo", "Run the whole story on a virtual S820 built in 2014: fetch, 4032, "
                        "prepare, flash, verify."),
    Cmd("doctor", "doctor", "Check Python, dependencies, serial ports, permissions, "
                            "ModemManager, drivers and disk."),
    Cmd("explain", "explain", "Explain an SP Flash Tool / BROM / DA error code: names per "
                              "version, cause, fix."),
    Cmd("catalog", "catalog", "Known firmware builds and resources (catalog)."),
    Cmd("fetch", "fetch", "Download, verify and unpack a firmware build; record it as the "
                          "current firmware."),
    Cmd("inspect", "firmware", "Show a firmware folder, or one preloader, EMI table or DA "
                               "file."),
    Cmd("verify", "firmware", "Validate a firmware folder (images, sizes, layout, preloader, "
                              "checksums); exit 3 on error."),
    Cmd("checksum", "firmware", "Check images against checksum.ini, or regenerate it with "
                                "--write (old one backed up)."),
    Cmd("preloader", "preloader", "Inspect preloaders: the memory parts (EMI table) they "
                                  "support."),
    Cmd("prepare", "prepare", "Swap the preloader (2014 units), install a modem set into "
                              "system.img, fix checksum.ini."),
    Cmd("modem", "modem", "Modem firmware sets: show what a build or folder holds."),
    Cmd("flash", "flash", "Flash a firmware folder to the phone, verify it, keep calibration "
                          "safe."),
    Cmd("backup", "flash", "Save NVRAM, PROTECT_F/S, PRO_INFO and SECCFG (IMEI, calibration) "
                           "to the data dir."),
    Cmd("restore", "flash", "Write a calibration backup back to its phone and verify it by "
                            "readback."),
    Cmd("readback", "flash", "Dump partitions from the phone into OUT_DIR (one NAME.bin each, "
                             "sha256 printed)."),
    Cmd("sim", "sim", "Plug in a virtual S820 in download mode on a pty or TCP port (Ctrl-C to "
                      "unplug)."),
)

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"],
                                    "max_content_width": 100}


# -- readable help ------------------------------------------------------------------------------


def _word(param: Any) -> str:
    """The metavar a person reads: the parameter's own name in capitals (PORT, PACKET_SIZE)."""
    return str(param.name or "value").upper()


class ReadableOption(TyperOption):
    """An option whose help shows `--wait WAIT`, never `<float>` or `<list[str]>`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        return self.metavar or _word(self)


class ReadableArgument(TyperArgument):
    """An argument shown as `FOLDER` / `[FOLDER]` with no `<path>` type label."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


def _polish(command: Any, path: str) -> None:
    """Readable metavars, and option-parsing errors as usage errors, on a loaded command tree."""
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument) and not isinstance(param, ReadableArgument):
            param.metavar = param.metavar or _word(param)
            param.__class__ = ReadableArgument
        elif isinstance(param, TyperOption) and not isinstance(param, ReadableOption):
            param.__class__ = ReadableOption
    callback = getattr(command, "callback", None)
    if callback is not None and not getattr(callback, "_romkit_wrapped", False):
        command.callback = _usage_on_invalid_options(callback, command, path)
    for name, sub in (getattr(command, "commands", None) or {}).items():
        _polish(sub, f"{path} {name}")


def _usage_on_invalid_options(fn: Callable[..., Any], command: Any,
                              path: str) -> Callable[..., Any]:
    """Pydantic rejecting an option value is the user's usage error, not an internal one.

    Also a library's own `UsageError` raised *from* such a ValidationError (PrepareRequest
    does that) is re-worded when the failing field is one of this command's options, so every
    command names the option as typed (`--device-year`), not the model field (`device_year`).
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            cause = exc.__cause__
            if cause is not None and _is_pydantic_validation(cause) and _field_param(
                    cause, command) is not None:
                raise _usage_from_validation(cause, command, path) from exc
            raise
        except Exception as exc:
            if _is_pydantic_validation(exc) and _about_options(exc, command):
                raise _usage_from_validation(exc, command, path) from exc
            raise

    call._romkit_wrapped = True  # type: ignore[attr-defined]
    return call


def _is_pydantic_validation(exc: BaseException) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported just to check
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def _about_options(exc: Any, command: Any) -> bool:
    """A ValidationError of the command's own options (a field named like one of them, or a
    request/options model), not of data a library read (that stays an internal error)."""
    title = str(getattr(exc, "title", ""))
    return _field_param(exc, command) is not None or title.endswith(
        ("Request", "Options", "Opts"))


def _field_param(exc: Any, command: Any) -> Any:
    """The command parameter named like the first failing field, if there is one."""
    loc = exc.errors()[0].get("loc") or ()
    field = str(loc[0]) if loc else ""
    return next((p for p in getattr(command, "params", []) if p.name == field), None)


def example_of(command: Any) -> str | None:
    """The command's `Example: …` line (from its docstring), used as a usage error's hint."""
    for line in (getattr(command, "help", None) or "").splitlines():
        if line.strip().startswith("Example:"):
            return line.strip().removeprefix("Example:").strip()
    return None


def _usage_hint(command: Any, path: str, accepted: str = "") -> str:
    example = example_of(command) if command is not None else None
    parts = [f"accepted: {accepted}"] if accepted else []
    parts += [f"e.g. {example}"] if example else []
    parts.append(f"`{path} -h` lists the options")
    return "; ".join(parts)


def _usage_from_validation(exc: Any, command: Any, path: str) -> UsageError:
    """First failing field → `invalid value for --option (value): why` + example as hint."""
    first = exc.errors()[0]
    loc = first.get("loc") or ()
    field = str(loc[0]) if loc else ""
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    param = _field_param(exc, command) if command is not None else None
    accepted = ""
    if param is None:
        label = f"--{field.replace('_', '-')}" if field else ""
    elif isinstance(param, TyperArgument):
        label = param.metavar or _word(param)
    else:
        label = param.opts[0]
        accepted = param.metavar if param.metavar and "|" in param.metavar else ""
    value = first.get("input")
    shown = f" ({value!r})" if label and isinstance(value, str | int | float) else ""
    text = f"invalid value for {label}{shown}: {message}" if label else message
    return UsageError(text, hint=_usage_hint(command, path, accepted),
                      details={"field": field or None})


# -- the lazy root group ------------------------------------------------------------------------


class LazyGroup(TyperGroup):
    """Knows commands by name (from `COMMANDS`) and imports a module only when it is needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table = {c.name: c for c in COMMANDS}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self._table, *(n for n in self.commands if n not in self._table)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self._table:
            self._load(self._table[cmd_name].module)
        return self.commands.get(cmd_name)

    def _load(self, module_name: str) -> None:
        """Import `romkit.cli.<module_name>` and adopt the click commands its register() adds."""
        module = importlib.import_module(f"romkit.cli.{module_name}")
        sub = typer.Typer(rich_markup_mode=None, add_completion=False)
        module.register(sub)
        group = typer.main.get_group(sub)
        for name, command in group.commands.items():
            _polish(command, f"romkit {name}")
            self.commands.setdefault(name, command)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """As click's, but "did you mean" also knows the commands not loaded yet."""
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            message = getattr(exc, "message", "")
            if args and "Did you mean" not in message and message.startswith("No such command"):
                close = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if close:
                    exc.message = (message.rstrip(".") + ". Did you mean "  # type: ignore[attr-defined]
                                   + ", ".join(repr(c) for c in close) + "?")
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the table: `romkit --help` imports no command module."""
        rows = [(c.name, c.help) for c in COMMANDS]
        rows += [(n, c.get_short_help_str(80)) for n, c in self.commands.items()
                 if n not in self._table and not c.hidden]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        formatter.write_paragraph()
        formatter.write_text("Run `romkit COMMAND -h` for a command's options and an example.")

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Complete command names from the table (no imports), options as usual."""
        from typer._click.shell_completion import CompletionItem

        items = [CompletionItem(c.name, help=c.help) for c in COMMANDS
                 if c.name.startswith(incomplete)]
        if not incomplete or incomplete.startswith("-"):
            items += typer.core._click.Command.shell_complete(self, ctx, incomplete)
        return items

    def invoke(self, ctx: Any) -> Any:
        # typer turns KeyboardInterrupt into a silent `Exit(130)`: carry it past typer to main().
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _CarriedInterrupt(exc) from exc


class _CarriedInterrupt(BaseException):  # noqa: N818 - a carrier, not an error
    """A Ctrl-C (plain or a library's `Interrupted` with details) on its way to main()."""

    def __init__(self, original: KeyboardInterrupt) -> None:
        super().__init__()
        self.original = original


def _as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    return exc if isinstance(exc, Interrupted) else Interrupted()


app = typer.Typer(
    name="romkit",
    cls=LazyGroup,
    help="Fetch, prepare, flash and verify MediaTek (MT6589 / Lenovo S820) firmware.\n\n"
         "Example: romkit fetch S820_ROW_S124 && romkit prepare && romkit flash",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT_SETTINGS,
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
    out.json = out.json or json_
    out.debug = out.debug or debug


def load_all() -> dict[str, Any]:
    """Every command, imported (for tests and docs generation; the CLI itself never does this)."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)  # an app of several commands is a group
    ctx = typer.Context(group)
    return {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}


# -- the single error handler -------------------------------------------------------------------


def _click_usage(exc: Any) -> UsageError:
    """A click usage error (its message, first letter lowered) with a pointer to the help."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "romkit"
    message = exc.format_message().strip() or "invalid command line"
    message = message[0].lower() + message[1:]
    command = ctx.command if ctx is not None else None
    return UsageError(message.rstrip("."), hint=_usage_hint(command, where))


def _fail(exc: RomkitError) -> None:
    out.error(exc)
    sys.exit(exc.exit_code)


def _json_requested(args: Iterable[str]) -> bool:
    """`--json` anywhere before `--` (usage errors happen before the option is parsed)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every outcome into one exit code.

    Every way out is one of: the command's own output and exit code; `error:` + `hint:` (and a
    JSON document with `--json`) with the documented exit code; one `interrupted:` line with
    exit 130; or an internal error in one line (traceback only with --debug).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # romkit uses numpy for byte sums only, never linear algebra: without this, importing numpy
    # starts an OpenBLAS thread pool that spins ~70 ms of CPU in every command that sums bytes
    # (a fifth of `romkit checksum` on 1 GiB; bench/startup_bench.py). A user's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    out.reset(json=_json_requested(args), debug="--debug" in args)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="romkit", standalone_mode=False)
        out.close_bars()
        sys.stdout.flush()
        if code == EXIT_INTERRUPTED:  # Ctrl-C while typer parsed the command line
            out.interrupted(Interrupted())
        sys.exit(code if isinstance(code, int) else 0)
    except RomkitError as exc:
        _fail(exc)
    except _CarriedInterrupt as carried:
        out.interrupted(_as_interrupted(carried.original))
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt as exc:
        out.interrupted(_as_interrupted(exc))
        sys.exit(EXIT_INTERRUPTED)
    except typer.Abort:
        out.interrupted(Interrupted("stopped at a prompt"))
        sys.exit(EXIT_INTERRUPTED)
    except typer.TyperException as exc:  # click's ClickException and its usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.format_message())  # `romkit` alone: the help, as click does
            sys.exit(getattr(exc, "exit_code", 2))
        if hasattr(exc, "ctx"):
            _fail(_click_usage(exc))
        _fail(RomkitError(exc.format_message(), hint="see `romkit -h`"))
    except BrokenPipeError:
        # `romkit catalog list | head`: the reader left; not an error worth a traceback
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush
        sys.exit(EXIT_FAILURE)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        out.internal_error(exc)
        if out.debug:
            traceback.print_exc()
        sys.exit(EXIT_FAILURE)
    finally:
        out.close_bars()
