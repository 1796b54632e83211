"""The `romkit` shell itself: lazy command loading, help, completion, errors, Ctrl-C, colour.

Everything runs the real CLI (a subprocess, or main() in this process); the terminal cases run
it on a real pseudo-terminal and read the screen through pyte, an independent VT100 emulator,
so "what a person sees" is what the emulator shows, not what our code thinks it printed.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import pkgutil
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pyte
import pytest
import typer
from clitools import run_cli, run_main

import romkit.cli as cli_pkg
from romkit.cli.app import COMMANDS, example_of, load_all
from romkit.cli.output import Output
from romkit.errors import Interrupted

HEAVY = ("numpy", "py7zr", "requests", "serial", "rich", "romkit.sim", "romkit.flash",
         "romkit.fetch", "romkit.device", "romkit.firmware", "romkit.catalog", "romkit.demo")


def imported_by(*args: str) -> set[str]:
    """Modules a fresh `romkit ARGS` process has loaded when it exits."""
    code = ("import sys\nfrom romkit.cli.app import main\nsys.argv = ['romkit', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=60)
    return set(res.stderr.rsplit("MODULES ", 1)[1].split())


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("-h",), ("explain", "4032")])
def test_light_command_lines_import_no_heavy_module(args: tuple[str, ...]) -> None:
    loaded = imported_by(*args)
    assert "romkit.cli.app" in loaded  # the probe did run romkit
    heavy = sorted(m for m in loaded if m.startswith(HEAVY))
    assert heavy == []


def test_a_command_imports_its_module_only() -> None:
    loaded = imported_by("inspect", "--help")
    assert "romkit.cli.firmware" in loaded
    assert not {"romkit.cli.flash", "romkit.cli.sim", "romkit.cli.demo", "romkit.cli.fetch"
                } & loaded


def registering_modules() -> dict[str, str]:
    """command name → romkit/cli module, by importing every module that has register()."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(cli_pkg.__path__):
        module = importlib.import_module(f"romkit.cli.{info.name}")
        if not callable(getattr(module, "register", None)):
            continue
        sub = typer.Typer()
        module.register(sub)
        for name in typer.main.get_group(sub).commands:
            found[name] = info.name
    return found


def test_command_table_lists_every_registered_command_with_its_own_help() -> None:
    table = {c.name: c for c in COMMANDS}
    assert {n: c.module for n, c in table.items()} == registering_modules()
    for name, command in load_all().items():
        first = (command.help or "").strip().splitlines()[0]
        assert table[name].help == first, name


def every_command() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []

    def walk(path: str, cmd: object) -> None:
        out.append((path, cmd))
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(f"{path} {name}", sub)

    for name, cmd in load_all().items():
        walk(f"romkit {name}", cmd)
    return out


def test_every_command_has_an_example_of_itself() -> None:
    for path, command in every_command():
        example = example_of(command)
        assert example and example.startswith(path.split(" ", 2)[0] + " " + path.split()[1]), \
            path


def test_help_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    type_label = re.compile(r"<(str|int|float|path|bool|list\[|[a-z]+ range)")
    for path, _ in every_command():
        code, text, err = run_main(capsys, *path.split()[1:], "-h")
        assert code == 0, (path, err)
        assert text.startswith(f"Usage: {path} ")
        assert "Example: romkit" in text, path
        assert not type_label.search(text), (path, type_label.search(text))
        assert "{" not in text.splitlines()[0], path  # no `{name}` in the usage line
    code, text, _ = run_main(capsys, "-h")
    assert code == 0 and "--install-completion" in text and "--show-completion" in text


def test_completion_of_commands_and_options() -> None:
    env = {"_ROMKIT_COMPLETE": "complete_bash", "COMP_WORDS": "romkit fl", "COMP_CWORD": "1"}
    assert run_cli(env=env).stdout.split() == ["flash"]
    env = {"_ROMKIT_COMPLETE": "complete_bash", "COMP_WORDS": "romkit flash --no-v",
           "COMP_CWORD": "2"}
    assert run_cli(env=env).stdout.split() == ["--no-verify"]
    script = run_cli("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert "_ROMKIT_COMPLETE=complete_bash" in script.stdout


USAGE_CASES = [
    (("fetch", ""), "NAME", "romkit fetch -h"),
    (("prepare", "--device-year", "2015", "."), "--device-year (2015)", "2013|2014"),
    (("flash", "--bogus"), "--bogus", "romkit flash -h"),
    (("fetch", "--connections", "0", "S124"), "--connections", "romkit fetch -h"),
    (("no-such-command",), "no-such-command", "romkit -h"),
    (("flsh",), "Did you mean 'flash'?", "romkit -h"),
    (("catalog", "show"), "NAME", "romkit catalog show -h"),
    (("sim", "--year", "2015", "--dry-run"), "--year", "romkit sim"),
]


@pytest.mark.parametrize(("args", "names", "hint_has"), USAGE_CASES)
def test_usage_errors_are_one_error_and_one_hint(args: tuple[str, ...], names: str,
                                                 hint_has: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 2, res.stderr
    assert lines[0].startswith("error: ") and names in lines[0]
    assert lines[1].startswith("hint: ") and hint_has in lines[1]
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize(("args", "names", "hint_has"), USAGE_CASES[:5])
def test_usage_errors_under_json_print_the_error_document(args: tuple[str, ...], names: str,
                                                          hint_has: str) -> None:
    res = run_cli("--json", *args)
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    error_line, hint_line = res.stderr.splitlines()
    assert doc["error"] == "UsageError" and doc["exit_code"] == 2
    assert error_line == f"error: {doc['message']}" and hint_line == f"hint: {doc['hint']}"


def test_romkit_errors_keep_their_exit_code_and_json() -> None:
    res = run_cli("--json", "verify", "/nonexistent/romkit-folder")
    doc = json.loads(res.stdout)
    assert res.returncode == doc["exit_code"] != 0
    assert res.stderr.splitlines()[0] == f"error: {doc['message']}"


# -- Ctrl-C --------------------------------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_ctrl_c_prints_one_interrupted_line(json_flag: list[str]) -> None:
    """A fetch waiting on a server that accepts and never answers; SIGINT once it connected."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/S820_ROW_S124_140404.7z"
        proc = subprocess.Popen([sys.executable, "-m", "romkit", *json_flag, "fetch", "S124",
                                 "--url", url,
                                 "--dest", os.devnull + "-x"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        conn, _ = server.accept()  # the sync point: romkit is now inside the download
        try:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            conn.close()
    assert proc.returncode == 130, err
    lines = err.splitlines()
    # the last lines: one `interrupted:` line, then the resume command as the hint
    assert [ln for ln in lines if ln.startswith("interrupted:")] == lines[-2:-1], err
    assert lines[-1].startswith("hint: resume with: romkit fetch S124"), err
    assert "Traceback" not in err
    if json_flag:
        doc = json.loads(out)
        assert doc["error"] == "Interrupted" and doc["exit_code"] == 130
        assert lines[-2].startswith(f"interrupted: {doc['message']}")
        assert doc["hint"] == lines[-1].removeprefix("hint: ")
    else:
        assert out == ""


def test_interrupted_with_what_was_left(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Output()
    printer.interrupted(Interrupted("flash stopped", left="SYSTEM, USRDATA not written",
                                    resume="romkit flash --only SYSTEM,USRDATA"))
    assert capsys.readouterr().err.splitlines() == [
        "interrupted: flash stopped; left: SYSTEM, USRDATA not written",
        "hint: resume with: romkit flash --only SYSTEM,USRDATA"]
    printer.json = True
    printer.interrupted(Interrupted(left="x", resume="romkit fetch S124"))
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 130 and doc["left"] == "x"
    assert doc["hint"] == "resume with: romkit fetch S124"


# -- a terminal ----------------------------------------------------------------------------------


def on_terminal(argv: list[str], env: dict[str, str], cols: int = 250, rows: int = 50,
                typed: bytes = b"") -> tuple[int, bytes, list[str]]:
    """Run `argv` on a real pty; (exit code, raw bytes, the screen as pyte renders it).

    `typed` is typed ahead (not echoed), e.g. the answer to a confirmation prompt.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    if typed:
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.write(master, typed)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-256color", **env})
    os.close(slave)
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                chunks.append(data)
            elif proc.poll() is not None:
                return

    reader = threading.Thread(target=pump)
    reader.start()
    code = proc.wait(timeout=300)
    reader.join(timeout=30)
    os.close(master)
    raw = b"".join(chunks)
    screen = pyte.Screen(cols, 2000)
    screen.set_mode(pyte.modes.LNM)  # a tty turns \n into \r\n; pyte must too
    pyte.ByteStream(screen).feed(raw)
    lines = [ln.rstrip() for ln in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return code, raw, lines


PARTITIONS = ["PRELOADER", "MBR", "EBR1", "UBOOT", "BOOTIMG", "RECOVERY", "SEC_RO", "LOGO",
              "EBR2", "ANDROID", "CACHE", "USRDATA"]  # the MT6589 S820 download list, in order
FRAGMENTS = re.compile(r"it/s|\?B/s|\| 0\.00/|━|╸|╺|\d+%")


def test_demo_flash_on_a_terminal_one_line_per_partition(tmp_path: Path) -> None:
    code, raw, lines = on_terminal([sys.executable, "-m", "romkit", "demo"],
                                   {"ROMKIT_HOME": str(tmp_path / "home")})
    assert code == 0, "\n".join(lines)
    assert b"\r" in raw and b"\x1b[" in raw  # bars were drawn live, then erased
    assert [ln for ln in lines if FRAGMENTS.search(ln)] == []
    steps = [i for i, ln in enumerate(lines) if re.match(r"\[\d+/\d+\] ", ln)]
    start = next(i for i in steps if "Flash again" in lines[i])
    end = steps[steps.index(start) + 1]
    block = lines[start:end]  # the step that flashes all 12 partitions
    verified = [ln for ln in block if ln.startswith("      | verified ")]
    assert [ln.split()[2].rstrip(":") for ln in verified] == PARTITIONS
    assert "" not in block  # no blank lines left behind by bars
    messages = [ln for ln in block[2:] if ln.startswith("      | ")
                and not ln.startswith("      | verified ")]
    assert len(messages) <= 14  # bring-up, speed switch + re-enumeration, backup
    assert len(block) == 2 + len(messages) + len(PARTITIONS) + 1  # header, $ cmd, …, ok: line
    assert block[-1].startswith("      ok: 12 partitions written and verified")
    assert len(set(block)) == len(block)  # nothing printed twice


def test_colour_on_a_terminal_only(tmp_path: Path) -> None:
    colour = re.compile(rb"\x1b\[[0-9;]*m")
    env = {"ROMKIT_HOME": str(tmp_path)}
    code, raw, lines = on_terminal([sys.executable, "-m", "romkit", "fetch", ""], env)
    assert code == 2 and colour.search(raw)
    assert lines[0].startswith("error: invalid value for NAME") and lines[1].startswith("hint:")
    code, raw, _ = on_terminal([sys.executable, "-m", "romkit", "fetch", ""],
                               {**env, "NO_COLOR": "1"})
    assert code == 2 and not colour.search(raw)
    piped = run_cli("fetch", "")
    assert "\x1b" not in piped.stderr


def test_prepare_shows_each_action_once(tmp_path: Path) -> None:
    from romkit.sim.artifacts import preloader_s820
    from romkit.sim.sample_firmware import build_s820_folder

    folder = build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), image_scale=0.1)
    new = tmp_path / "preloader_2014.bin"
    new.write_bytes(preloader_s820(2014))
    res = run_cli("prepare", str(folder), "--preloader", str(new))
    assert res.returncode == 0, res.stderr
    lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    mentions = [ln for ln in lines if "preloader_s820.bin" in ln and "<-" in ln]
    assert len(mentions) == 1, lines  # the swap, once (it was also echoed while applied)
    assert len(set(lines)) == len(lines), lines


def test_flash_on_a_terminal_one_line_per_partition_and_a_summary(tmp_path: Path) -> None:
    from romkit.sim.artifacts import da_s820, preloader_s820
    from romkit.sim.sample_firmware import build_s820_folder

    folder = build_s820_folder(tmp_path / "fw", preloader=preloader_s820(2013), da=da_s820())
    env = {"ROMKIT_HOME": str(tmp_path / "home")}
    sim = subprocess.Popen([sys.executable, "-m", "romkit", "sim", "--once", "--json",
                            "--state", str(tmp_path / "phone")], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        assert sim.stdout is not None
        port = json.loads(sim.stdout.readline())["port"]
        # "y" answers a confirmation prompt before writing, should flash ask one
        code, _, lines = on_terminal([sys.executable, "-m", "romkit", "flash", str(folder),
                                      "--port", port], env, typed=b"y\n")
    finally:
        sim.kill()
        sim.communicate(timeout=30)
    assert code == 0, "\n".join(lines)
    assert [ln for ln in lines if FRAGMENTS.search(ln)] == []
    verified = [ln.split()[1].rstrip(":") for ln in lines if ln.startswith("verified ")]
    assert verified == PARTITIONS
    after = lines[lines.index(next(ln for ln in lines if ln.startswith("verified "))):]
    assert not any(p in ln for ln in after if not ln.startswith("verified ") for p in
                   ("PRELOADER", "BOOTIMG", "USRDATA"))  # no per-partition rows again
    head = next(i for i, ln in enumerate(lines) if ln.startswith("written "))
    assert lines[head].split() == ["written", "verified", "resumed", "rewrites", "bytes",
                                   "time", "speed"]
    assert lines[head + 2].split()[:4] == ["12", "12", "0", "0"]
    warnings = [ln for ln in lines if ln.startswith("warning: ")]
    assert all(w.removeprefix("warning: ") not in "\n".join(lines[head:]) for w in warnings)
    assert any(ln.startswith("done: download-only on phone ") for ln in lines[head:])
