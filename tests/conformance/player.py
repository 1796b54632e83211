"""Conformance transcript player: replays byte-exact exchanges taken from public evidence.

Why a separate player: romkit's flash engine and its virtual phone were written from the same
notes, so they can agree with each other and both be wrong. A transcript (see README.md in
this folder) records what an outside party does on the wire — SP Flash Tool's USB capture of a
real MT6589, mtkclient's legacy-DA code, the shared reference — and this module plays one side
of it against romkit over a real pty:

* ``role="phone"``: the player is the phone; romkit's engine is the host. Every byte the
  engine sends is checked against the transcript's ``H`` lines; the ``P`` lines are sent.
* ``role="host"``: the player is the host; the virtual phone (``romkit sim``) answers. Every
  byte the phone sends is checked against the ``P`` lines; the ``H`` lines are sent.

On the first difference the player raises `Mismatch` naming the step number, the expected
and received bytes and the transcript line (with its ``# source:``), so a failure points at
the public fact that was broken. Nothing here imports romkit: the player must not share code
with what it judges.
"""

from __future__ import annotations

import ast
import os
import re
import struct
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import serial

HERE = Path(__file__).parent
TRANSCRIPTS = HERE / "transcripts"

# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where a step came from, for error messages."""

    file: str
    line: int
    text: str
    source: str


@dataclass(frozen=True)
class Field:
    """One piece of an H/P line: literal bytes or a named placeholder."""

    literal: bytes | None = None
    name: str = ""
    length: str = ""  # expression, or "*" (length of the bound value)
    mode: str = ""  # "" any/bound, "=" must equal / send, "~" any / send
    value: str = ""
    cursor: bool = False  # {name>:n}: next n bytes of a bound stream


@dataclass
class Step:
    kind: str  # "H", "P", "S" (silence ms), "T" (answer within ms), "@" (host action),
    # "!" (event), "loop"
    where: Where
    fields: list[Field] = field(default_factory=list)
    arg: str = ""
    body: list[Step] = field(default_factory=list)  # for loops


@dataclass
class Transcript:
    name: str
    path: Path
    meta: dict[str, str]
    sources: list[str]
    steps: list[Step]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)?(>)?:([^}=~]+)(?:([=~])([^}]*))?\}")
_TOKEN = re.compile(r"\{[^}]*\}|[0-9A-Fa-f]+|\S+")


def _fields(text: str, where: Where) -> list[Field]:
    out: list[Field] = []
    for tok in _TOKEN.findall(text):
        if tok.startswith("{"):
            m = _PLACEHOLDER.fullmatch(tok)
            if not m:
                raise SyntaxError(f"{where.file}:{where.line}: bad placeholder {tok!r}")
            name, cursor, length, mode, value = m.groups()
            out.append(Field(name=name or "", length=length.strip(), mode=mode or "",
                             value=(value or "").strip(), cursor=bool(cursor)))
        elif re.fullmatch(r"[0-9A-Fa-f]+", tok) and len(tok) % 2 == 0:
            out.append(Field(literal=bytes.fromhex(tok)))
        else:
            raise SyntaxError(f"{where.file}:{where.line}: not hex or placeholder: {tok!r}")
    return out


def load(name: str | Path) -> Transcript:
    """Parse a transcript file (``name`` relative to transcripts/ or a path)."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = TRANSCRIPTS / path
    meta: dict[str, str] = {}
    sources: list[str] = []
    steps = _parse(path, meta, sources, top=True)
    if not sources:
        raise SyntaxError(f"{path.name}: a transcript must start with its '# source:' lines")
    return Transcript(path.stem, path, meta, sources, steps)


def _parse(path: Path, meta: dict[str, str], sources: list[str], top: bool) -> list[Step]:
    steps: list[Step] = []
    stack: list[list[Step]] = [steps]
    source = ""
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = Where(path.name, no, line, source)
        if line.startswith("#"):
            m = re.match(r"#\s*([a-z][a-z-]*):\s*(.*)", line)
            if m:
                key, value = m.group(1), m.group(2).strip()
                if key == "source":
                    source = value
                    if value not in sources:
                        sources.append(value)
                elif top and key not in meta:
                    meta[key] = value
                elif top:
                    meta[key] += " " + value
            continue
        kind, _, rest = line.partition(" ")
        rest = rest.strip()
        if kind == "<":
            inc = path.parent / rest
            stack[-1].extend(_parse(inc, meta, sources, top=False))
        elif kind in ("H", "P"):
            stack[-1].append(Step(kind, where, _fields(rest, where)))
        elif kind in ("S", "@", "!", "T"):
            stack[-1].append(Step(kind, where, arg=rest))
        elif kind == "[":
            loop = Step("loop", where, arg=rest)
            stack[-1].append(loop)
            stack.append(loop.body)
        elif kind == "]":
            if len(stack) == 1:
                raise SyntaxError(f"{path.name}:{no}: ']' without '['")
            stack.pop()
        else:
            raise SyntaxError(f"{path.name}:{no}: unknown step kind {kind!r}")
    if len(stack) != 1:
        raise SyntaxError(f"{path.name}: unclosed '['")
    return steps


def actions(steps: list[Step]) -> Iterator[Step]:
    """The host actions (``@`` lines) in order, loops included once."""
    for s in steps:
        if s.kind == "@":
            yield s
        elif s.kind == "loop":
            yield from actions(s.body)


def without_actions(steps: list[Step], drop: set[str]) -> list[Step]:
    """The steps minus the sections of the named host actions (the host does not send them)."""
    out: list[Step] = []
    skipping = False
    for s in steps:
        if s.kind == "@":
            skipping = s.arg.split()[0] in drop
        if skipping:
            continue
        if s.kind == "loop":
            s = Step(s.kind, s.where, s.fields, s.arg, without_actions(s.body, drop))
        out.append(s)
    return out


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def xor16_le(data: bytes) -> int:
    """XOR of the body's little-endian 16-bit words (reference §2 "SEND_DA checksum")."""
    if len(data) % 2:
        data += b"\x00"
    acc = 0
    for (w,) in struct.iter_unpack("<H", data):
        acc ^= w
    return acc


def sum16(data: bytes) -> int:
    """16-bit byte sum (mtkclient dalegacy_lib.py sdmmc_write_data / readflash checksums)."""
    return sum(data) & 0xFFFF


class Mismatch(AssertionError):
    """The other side did not do what the transcript says."""


@dataclass
class Env:
    values: dict[str, bytes]
    cursors: dict[str, int] = field(default_factory=dict)

    def num(self, name: str) -> int:
        return int.from_bytes(self.values[name], "big")

    def expr(self, text: str) -> int:
        """Evaluate a length/condition: ints, names of captured values (big-endian), + - * //
        ( ) min max and comparisons."""
        tree = ast.parse(text.replace("/", "//").replace("////", "//"), mode="eval")
        return int(self._eval(tree.body))

    def _eval(self, node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in self.values:
                raise KeyError(f"transcript uses {node.id!r} before it is known")
            return self.num(node.id)
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left), self._eval(node.right)
            ops: dict[type, Callable[[int, int], int]] = {
                ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
                ast.Mult: lambda x, y: x * y, ast.FloorDiv: lambda x, y: x // y,
                ast.Mod: lambda x, y: x % y}
            return ops[type(node.op)](a, b)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            a, b = self._eval(node.left), self._eval(node.comparators[0])
            cmp: dict[type, Callable[[int, int], bool]] = {
                ast.Eq: lambda x, y: x == y, ast.NotEq: lambda x, y: x != y,
                ast.Lt: lambda x, y: x < y, ast.GtE: lambda x, y: x >= y}
            return int(cmp[type(node.ops[0])](a, b))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("min", "max"):
            args = [self._eval(a) for a in node.args]
            return min(args) if node.func.id == "min" else max(args)
        raise SyntaxError(f"unsupported expression {ast.dump(node)}")

    def value(self, text: str, length: int, iteration: int) -> bytes:
        """A placeholder's value: hex, ``@xor16(name)``, ``@sum16(name)``, ``@zeros``,
        ``$name``; a comma list gives one value per loop iteration."""
        choices = [c.strip() for c in text.split(",")]
        text = choices[min(iteration, len(choices) - 1)]
        if text == "@zeros":
            return bytes(length)
        m = re.fullmatch(r"@(xor16|sum16)\((\w+)\)", text)
        if m:
            data = self.values[m.group(2)]
            v = xor16_le(data) if m.group(1) == "xor16" else sum16(data)
            return v.to_bytes(length, "big")
        if text.startswith("$"):
            return self.values[text[1:]]
        return bytes.fromhex(text)


# --------------------------------------------------------------------------------------------
# Wires
# --------------------------------------------------------------------------------------------


class Wire:
    """A byte pipe with a deadline-based exact read and a one-byte look-ahead."""

    pending: bytes = b""

    def read(self, n: int, timeout: float) -> bytes:
        head, self.pending = self.pending[:n], self.pending[n:]
        if len(head) == n:
            return head
        return head + self.read_raw(n - len(head), timeout)

    def peek(self, timeout: float) -> bytes:
        """The next byte without consuming it (b"" on timeout)."""
        if not self.pending:
            self.pending = self.read_raw(1, timeout)
        return self.pending[:1]

    def read_raw(self, n: int, timeout: float) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PtyPhoneWire(Wire):
    """The phone end of a fresh pty; the engine opens `path` like a USB serial port."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        for fd in (self.master, self.slave):
            tty.setraw(fd, termios.TCSANOW)
        self.path = os.ttyname(self.slave)
        self.closed = False

    def read_raw(self, n: int, timeout: float) -> bytes:
        import select

        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.master], [], [], left)
            if not r:
                break
            try:
                chunk = os.read(self.master, n - len(out))
            except OSError:  # EIO: the host closed its end; wait for it to reopen
                time.sleep(0.01)
                continue
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            k = os.write(self.master, view)
            view = view[k:]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass


class SerialHostWire(Wire):
    """The host end: pyserial on the virtual phone's port."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.s = serial.serial_for_url(port, timeout=1.0)

    def read_raw(self, n: int, timeout: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.s.timeout = min(left, 1.0)
            try:
                out += self.s.read(n - len(out))
            except serial.SerialException:
                break
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.s.write(data)
        self.s.flush()

    def close(self) -> None:
        try:
            self.s.close()
        except (OSError, serial.SerialException):
            pass


# --------------------------------------------------------------------------------------------
# Playing
# --------------------------------------------------------------------------------------------


@dataclass
class Player:
    """Plays one side of a transcript over `wire`.

    `bindings` supplies named values the transcript leaves open (a DA body, an EMI table,
    data to write). `on_event` handles ``!`` steps (``! reconnect``) and returns the new wire.
    """

    transcript: Transcript
    role: str  # "phone" or "host"
    wire: Wire
    bindings: dict[str, bytes] = field(default_factory=dict)
    timeout: float = 5.0
    on_event: Callable[[str, Wire], Wire] | None = None
    steps: list[Step] | None = None
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = Env(dict(self.bindings))
        self.count = 0
        self._prompt: float | None = None  # from a "T ms" step: the next answer's deadline

    def run(self) -> Env:
        self._run(self.steps if self.steps is not None else self.transcript.steps, 0)
        return self.env

    # -- steps ---------------------------------------------------------------------------------
    def _run(self, steps: list[Step], iteration: int) -> None:
        for step in steps:
            if step.kind == "loop":
                self._loop(step)
                continue
            self.count += 1
            if step.kind == "@":
                self.log.append(f"@ {step.arg}")
            elif step.kind == "S":
                self._silence(step)
            elif step.kind == "T":
                if self.role == "host":
                    self._prompt = int(step.arg) / 1000
            elif step.kind == "!":
                if self.on_event is None:
                    raise Mismatch(self._where(step, f"no handler for event {step.arg!r}"))
                self.wire = self.on_event(step.arg, self.wire)
            else:
                sending = (step.kind == "P") == (self.role == "phone")
                if sending:
                    self._send(step, iteration)
                else:
                    self._receive(step, iteration)

    def _loop(self, step: Step) -> None:
        kind, _, rest = step.arg.partition(" ")
        if kind == "any":
            # An exchange a host may insert here zero or more times (e.g. USB_CHECK_STATUS
            # between commands). As the host we do it once; as the phone we answer it as
            # often as the host's next byte starts it.
            if self.role == "host":
                self._run(step.body, 0)
                return
            first = next(s for s in step.body if s.kind == "H").fields[0].literal
            assert first, f"{step.where.file}:{step.where.line}: 'any' needs a literal start"
            for i in range(10_000):
                if self.wire.peek(self.timeout)[:1] != first[:1]:
                    return
                self._run(step.body, i)
            return
        if kind == "until":
            for i in range(10_000):
                self._run(step.body, i)
                if self.env.expr(rest):
                    return
            raise Mismatch(self._where(step, "loop never ended"))
        if kind == "chunks":
            total_s, size_s = rest.split()
            total, size = self.env.expr(total_s), self.env.expr(size_s)
            done = 0
            i = 0
            while done < total:
                n = min(size, total - done)
                self.env.values["_n"] = n.to_bytes(8, "big")
                self._run(step.body, i)
                done += n
                i += 1
            return
        raise SyntaxError(f"{step.where.file}:{step.where.line}: unknown loop {kind!r}")

    def _length(self, f: Field, step: Step) -> int:
        if f.literal is not None:
            return len(f.literal)
        if f.length == "*":
            return len(self.env.values[f.name])
        try:
            return self.env.expr(f.length)
        except KeyError as exc:
            raise Mismatch(self._where(step, str(exc))) from None

    def _bytes_to_send(self, f: Field, n: int, step: Step, iteration: int) -> bytes:
        if f.literal is not None:
            return f.literal
        if f.mode in ("=", "~"):
            data = self.env.value(f.value, n, iteration)
        elif f.cursor:
            stream = self.env.values.get(f.name)
            if stream is None:
                raise Mismatch(self._where(step, f"no binding for stream {f.name!r}"))
            pos = self.env.cursors.get(f.name, 0)
            self.env.cursors[f.name] = pos + n
            return stream[pos:pos + n]
        elif f.name in self.env.values:
            data = self.env.values[f.name]
        else:
            raise Mismatch(self._where(step, f"no value to send for {{{f.name}}}"))
        return data[:n].ljust(n, b"\x00")

    def _send(self, step: Step, iteration: int) -> None:
        out = bytearray()
        for f in step.fields:
            n = self._length(f, step)
            data = self._bytes_to_send(f, n, step, iteration)
            if f.name and not f.cursor:
                self.env.values[f.name] = data
            out += data
        self.log.append(f"{step.kind} {bytes(out[:64]).hex()}{'…' if len(out) > 64 else ''}")
        try:
            self.wire.write(bytes(out))
        except OSError as exc:
            raise Mismatch(self._where(step, f"could not send: {exc}")) from None

    def _receive(self, step: Step, iteration: int) -> None:
        for f in step.fields:
            n = self._length(f, step)
            if self._prompt is not None and n:
                limit, self._prompt = self._prompt, None
                t0 = time.monotonic()
                got = self.wire.read(1, limit)
                if not got:
                    late = self.wire.read(1, self.timeout)
                    waited = (time.monotonic() - t0) * 1000
                    when = f"first byte after {waited:.0f} ms" if late else "none at all"
                    raise Mismatch(self._where(
                        step, f"no answer within {limit * 1000:.0f} ms ({when})"))
                got += self.wire.read(n - 1, self.timeout)
            else:
                got = self.wire.read(n, self.timeout + n / 2_000_000)
            if f.literal is not None:
                expected: bytes | None = f.literal
            elif f.mode == "=":
                expected = self.env.value(f.value, n, iteration)
            else:
                expected = None
            if len(got) < n or (expected is not None and got != expected):
                shown = expected.hex() if expected is not None else f"any {n} bytes"
                more = self.wire.read(16, 0.05) if len(got) == n else b""
                raise Mismatch(self._where(
                    step, f"expected {shown[:96]}, received {got[:48].hex() or 'nothing'}"
                    + (f" (then {more.hex()})" if more else "")
                    + (f" [{len(got)} of {n} bytes]" if len(got) < n else "")))
            if f.name:
                if f.cursor:
                    self.env.values[f.name] = self.env.values.get(f.name, b"") + got
                else:
                    self.env.values[f.name] = got
            self.log.append(f"{step.kind} {got[:64].hex()}")

    def _silence(self, step: Step) -> None:
        ms = int(step.arg)
        if self.role == "phone":
            return  # as the phone, silence is simply sending nothing before the next step
        extra = self.wire.read(1, ms / 1000)
        if extra:
            extra += self.wire.read(32, 0.05)
            raise Mismatch(self._where(step, f"expected silence for {ms} ms, received "
                                             f"{extra.hex()}"))

    def _where(self, step: Step, message: str) -> str:
        w = step.where
        recent = " | ".join(self.log[-4:])
        return (f"{self.transcript.name} step {self.count} ({w.file}:{w.line} `{w.text}`): "
                f"{message}\n  source: {w.source or '(none)'}\n  last steps: {recent}")
