"""`romkit demo`: the whole rescue story — fetch, 4032, prepare, flash, verify — on a virtual phone.

People meet romkit with a bricked S820 in hand and no wish to experiment on it. The demo
shows, on this machine and without a phone, exactly what will happen to theirs: a synthetic
firmware archive is published on a local mirror (127.0.0.1 only) and fetched through the real
download + unpack path, a virtual S820 built in 2014 refuses the first flash with SP Flash
Tool's 4032 (nothing written), `prepare --device-year 2014` swaps in the 2014 preloader through
the catalog and the same downloader, and the second flash backs up calibration, writes and
verifies. Every step carries two commands: the one that does what the step just did, by hand,
against this demo's workspace (its paths, its ROMKIT_HOME — copyable, and still valid after
the run with --keep), and the one a user would type for a real phone.

The story is judged green only by checks made *here*, independently of the code under test:
the phone's storage is hashed before and after the refused flash, and after the good flash
its eMMC is read directly (the simulator's storage, not the DA) and compared byte for byte with
the image files at the addresses of the synthetic layout (`romkit.sim.s820.LAYOUT`).

Everything lives in one workspace folder with `ROMKIT_HOME` pointed inside it for the
duration, so the user's real caches, catalogs and backups are never touched; the environment
is restored afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from romkit import knowledge
from romkit.catalog import CATALOG_URL_ENV, import_catalog_file
from romkit.errors import DiskError, DramInitError, RomkitError, UsageError
from romkit.fetch.localserver import LocalServer
from romkit.fetch.service import FetchRequest, fetch
from romkit.flash.backup import find_set
from romkit.flash.engine import FlashRequest, FlashResult, flash
from romkit.fsutil import atomic_open, atomic_write_bytes, atomic_write_text, sha256_file
from romkit.progress import ProgressCallback, Reporter
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.sample_firmware import IMAGES, PRELOADER_NAME, build_s820_folder

DEMO_BUILD_ID = "DEMO_S820_ROW_S124"
DEMO_DEVICE_ID = "demo-s820"
DEMO_PRELOADER_ID = "DEMO_PRELOADER_2014"
REAL_BUILD = "S820_ROW_S124"
DEVICE_YEAR: Literal[2014] = 2014
ARCHIVE_NAME = f"{DEMO_BUILD_ID}.7z"
PRELOADER_FILE = "preloader_demo_s820_2014.bin"
CATALOG_FILE = "romkit-demo.toml"
WORKSPACE_MARKER = ".romkit-demo"
WORKSPACE_PLACEHOLDER = "WORKSPACE"  # a dry run's stand-in for the temp folder it would make
HOME_DIR = "home"  # ROMKIT_HOME while the demo runs
PHONE_DIR = "phone"  # the virtual phone's eMMC (`romkit sim --state`)
FIRMWARE_DEST = "firmware"  # `fetch --dest`; the archive unpacks into FIRMWARE_SUBDIR below it
FIRMWARE_SUBDIR = "target_bin"
SPFT_DRAM_FAIL = 4032
USER_BASE = 0x600000  # MT6589: user-area offset = scatter (linear) address - 0x600000
NVRAM_TEXT = b"ROMKIT-SIM NVRAM"

if TYPE_CHECKING:
    from romkit.sim.phone import VirtualPhone

StepStatus = Literal["ok", "expected-error", "failed", "planned"]

# (id, title, command a user would run for a real phone; None where there is none).
# What the step does by hand against the demo's own workspace is `_by_hand`.
STEPS: tuple[tuple[str, str, str | None], ...] = (
    ("build", "Build a synthetic S820 firmware archive (7z)", None),
    ("mirror", "Publish it on a local mirror (127.0.0.1) and add it to the catalog", None),
    ("fetch", "Download, verify and unpack the build", f"romkit fetch {REAL_BUILD}"),
    ("phone", f"Plug in the phone: a virtual S820 built in {DEVICE_YEAR}", None),
    ("flash-refused", "Flash it as downloaded", "romkit flash"),
    ("explain", f"Look up error {SPFT_DRAM_FAIL}", f"romkit explain {SPFT_DRAM_FAIL}"),
    ("prepare", f"Swap in the {DEVICE_YEAR} preloader",
     f"romkit prepare --device-year {DEVICE_YEAR}"),
    ("flash", "Flash again: calibration backup, write, verify", "romkit flash"),
    ("check", "Read the phone's eMMC back and compare it with the images",
     "romkit readback --all ./dump"),
)


class DemoRequest(BaseModel):
    """What `romkit demo` was asked to do."""

    workdir: Path | None = None
    keep: bool = False
    dry_run: bool = False
    wait: float = Field(default=20.0, gt=0, le=300)  # seconds to wait for the virtual phone
    # The virtual phone's cable: a pty where the system has them, else TCP (issue 20).
    link: Literal["pty", "tcp"] | None = None


class DemoStep(BaseModel):
    """One step of the story as it happened (or, with dry_run, as it would happen)."""

    id: str
    title: str
    command: str | None  # does what this step did, by hand, in the demo's workspace
    real_command: str | None = None  # the same step for a real phone
    status: StepStatus
    detail: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


class DemoResult(BaseModel):
    """The story's outcome; `ok` only when 4032 came first, then a verified flash with a
    calibration backup, and the phone's eMMC equals the images byte for byte."""

    ok: bool
    dry_run: bool = False
    workdir: str | None
    kept: bool
    steps: list[DemoStep]
    # The environment the step commands need (the demo's private data dir).
    env: dict[str, str] = Field(default_factory=dict)
    first_error_code: int | None = None
    verified_partitions: list[str] = Field(default_factory=list)
    emmc_matches: bool = False
    backup_set: str | None = None
    backup_path: str | None = None
    seconds: float = 0.0
    error: dict[str, Any] | None = None


class _StoryFailed(Exception):
    """A step's own check failed (not a RomkitError from the code it drove)."""


# -- workspace and environment -----------------------------------------------------------------
@contextlib.contextmanager
def _demo_environment(home: Path) -> Iterator[None]:
    """ROMKIT_HOME inside the workspace, no remote catalog, no proxy for 127.0.0.1."""
    names = ("ROMKIT_HOME", CATALOG_URL_ENV, "NO_PROXY", "no_proxy")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["ROMKIT_HOME"] = str(home)
    os.environ.pop(CATALOG_URL_ENV, None)
    for name in ("NO_PROXY", "no_proxy"):
        previous = saved[name]
        os.environ[name] = "127.0.0.1,localhost" + (f",{previous}" if previous else "")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Workspace:
    """The demo's folder: a fresh temp dir, or the user's (empty, or an earlier demo's)."""

    def __init__(self, workdir: Path | None) -> None:
        self.created = False
        if workdir is None:
            self.root = Path(tempfile.mkdtemp(prefix="romkit-demo-"))
            self.created = True
        else:
            self.root = workdir.expanduser().absolute()
            self._claim()
        try:
            atomic_write_text(self.root / WORKSPACE_MARKER,
                              "made by `romkit demo`; safe to delete\n")
        except DiskError:
            self.remove()
            raise

    def _claim(self) -> None:
        root = self.root
        if root.exists() and not root.is_dir():
            raise UsageError(f"--workdir {root} is a file", hint="choose a new or empty folder")
        if root.is_dir():
            children = list(root.iterdir())
            if children and not (root / WORKSPACE_MARKER).is_file():
                raise UsageError(f"--workdir {root} is not empty",
                                 hint="choose a new or empty folder (or one made by an earlier "
                                      "`romkit demo --keep`, which is replaced)")
            self._clear(children)
            return
        try:
            root.mkdir(parents=True)
        except OSError as exc:
            raise DiskError(f"cannot create {root}: {exc.strerror or exc}",
                            hint="choose a writable location with --workdir") from exc
        self.created = True

    @staticmethod
    def _clear(children: list[Path]) -> None:
        for child in children:
            try:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            except OSError as exc:
                raise DiskError(f"cannot remove {child}: {exc.strerror or exc}",
                                hint="remove the demo workspace by hand or choose another "
                                     "--workdir") from exc

    def remove(self) -> None:
        if self.created:
            shutil.rmtree(self.root, ignore_errors=True)
        elif self.root.is_dir():
            self._clear(list(self.root.iterdir()))

    def path(self, name: str) -> Path:
        return self.root / name


# -- independent checks ------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _layout_sizes() -> dict[str, tuple[int, int]]:
    """Partition → (linear start, size) from the synthetic layout (the next start - this)."""
    rows = list(s820.LAYOUT)
    return {name.removeprefix("__NODL_"): (start, rows[i + 1][1] - start)
            for i, (name, start) in enumerate(rows[:-1])}


def _user_images() -> list[tuple[str, str]]:
    """(file, partition) of every image the sample firmware puts in the user area."""
    return [("MBR", "MBR"), ("EBR1", "EBR1"), ("EBR2", "EBR2"),
            *((file, part) for file, part, _size in IMAGES)]


class _PhoneReader:
    """Reads the virtual phone's eMMC straight from the simulator's storage."""

    def __init__(self, phone: VirtualPhone) -> None:
        self.storage = phone.storage

    def read(self, region: Literal["boot1", "user"], offset: int, length: int) -> bytes:
        return bytes(self.storage.read(region, offset, length))

    def preloader(self) -> bytes:
        """The raw preloader BOOT1 points at (EMMC_BOOT → BRLYT → boot region), by the
        reference's header layout rather than romkit's own parser."""
        head = self.read("boot1", 0, 0x200)
        if not head.startswith(b"EMMC_BOOT"):
            return b""
        brlyt = struct.unpack_from("<I", head, 0x10)[0]
        if brlyt + 0x20 > s820.BOOT_SIZE:
            return b""
        table = self.read("boot1", brlyt, 0x20)
        if not table.startswith(b"BRLYT"):
            return b""
        start = struct.unpack_from("<I", table, 0x0C)[0]
        if start + 0x38 > s820.BOOT_SIZE:
            return b""
        gfh = self.read("boot1", start, 0x38)
        if not gfh.startswith(b"MMM"):
            return b""
        file_len = struct.unpack_from("<I", gfh, 0x20)[0]
        return self.read("boot1", start, min(file_len, s820.BOOT_SIZE - start))

    def image_ranges(self, folder: Path) -> dict[str, tuple[int, int]]:
        """User-area (offset, length) of each image file in the folder, by partition."""
        sizes = _layout_sizes()
        ranges = {}
        for file, part in _user_images():
            length = (folder / file).stat().st_size
            ranges[part] = (sizes[part][0] - USER_BASE, length)
        return ranges

    def snapshot(self, folder: Path) -> dict[str, str]:
        """sha256 of the phone's bytes where each image (and the preloader) would go."""
        shots = {part: _sha256(self.read("user", off, length))
                 for part, (off, length) in self.image_ranges(folder).items()}
        shots["BOOT1"] = _sha256(self.read("boot1", 0, 0x10000))
        return shots


def _checksum_entry(folder: Path, key: str) -> int | None:
    """A [CheckSum] value of the folder's checksum.ini, read as plain text (None if absent)."""
    for ini in sorted(folder.glob("[Cc]heck[Ss]um.ini")):
        for line in ini.read_text(encoding="utf-8", errors="replace").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip().upper() == key:
                try:
                    return int(value.strip(), 16)
                except ValueError:
                    return None
    return None


def _compare_emmc(reader: _PhoneReader, folder: Path, preloader_file: Path) -> list[str]:
    """Every image equal on the phone, byte for byte; returns the partitions checked."""
    bad = []
    for part, (off, length) in reader.image_ranges(folder).items():
        file = next(f for f, p in _user_images() if p == part)
        if _sha256(reader.read("user", off, length)) != sha256_file(folder / file):
            bad.append(part)
    if reader.preloader() != preloader_file.read_bytes():
        bad.append("PRELOADER")
    if bad:
        raise _StoryFailed("the phone's eMMC differs from the images in: " + ", ".join(bad))
    return ["PRELOADER", *reader.image_ranges(folder)]


# -- the story ---------------------------------------------------------------------------------
def _catalog_toml(archive_url: str, archive_sha: str, archive_size: int, pre_url: str,
                  pre_sha: str, pre_size: int, mirror_dir: Path) -> str:
    """The demo's catalog. Each file has two mirrors: the local HTTP server the story
    downloads from, and the mirror folder itself (file://), tried only when the server is
    gone — so a `romkit fetch` copied from the demo still works after a run with --keep."""
    def q(text: str) -> str:  # TOML basic string (JSON escapes are valid TOML escapes)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def mirrors(url: str, name: str) -> str:
        return (f"[{{ url = {q(url)}, label = {label} }}, "
                f"{{ url = {q((mirror_dir / name).as_uri())}, label = {folder} }}]")

    label = q("romkit demo local mirror (127.0.0.1)")
    folder = q("romkit demo mirror folder (kept with --keep)")
    source = '[{ about = "all facts", ref = "romkit demo (synthetic)", confidence = "verified" }]'
    return f"""# Written by `romkit demo`: a SYNTHETIC device, build and preloader for the virtual
# S820. Nothing here is real Lenovo firmware; the HTTP mirror exists only while the demo
# runs, the mirror folder as long as the demo's workspace.
schema = 1

[[device]]
id = "{DEMO_DEVICE_ID}"
names = ["Demo S820 (synthetic)"]
vendor = "romkit demo (synthetic)"
soc = "MT6589"
hw_code = 0x6583
storage = "eMMC"
notes = ["SYNTHETIC: the virtual phone of `romkit demo`, not a real device."]
sources = {source}

[device.memory_by_year.2013]
parts = [{q(s820.PART_2013.label)}]

[device.memory_by_year.{DEVICE_YEAR}]
parts = [{q(s820.PART_2014.label)}]
preloader = "{DEMO_PRELOADER_ID}"

[[build]]
id = "{DEMO_BUILD_ID}"
title = "SYNTHETIC demo build shaped like S820_ROW_S124 (not real firmware)"
device = "{DEMO_DEVICE_ID}"
region = "ROW"
kind = "full"
android = "4.2.1"
file_name = "{ARCHIVE_NAME}"
size = {archive_size}
hashes = {{ sha256 = "{archive_sha}" }}
mirrors = {mirrors(archive_url, ARCHIVE_NAME)}
scatter = "{FIRMWARE_SUBDIR}/MT6589_Android_scatter_emmc.txt"
notes = ["SYNTHETIC: made by `romkit demo` for its virtual phone."]
sources = {source}

[[resource]]
id = "{DEMO_PRELOADER_ID}"
title = "SYNTHETIC {DEVICE_YEAR} preloader of the demo S820 (lists the {DEVICE_YEAR} memory part)"
device = "{DEMO_DEVICE_ID}"
kind = "preloader"
device_years = [{DEVICE_YEAR}]
file_name = "{PRELOADER_FILE}"
size = {pre_size}
hashes = {{ sha256 = "{pre_sha}" }}
mirrors = {mirrors(pre_url, PRELOADER_FILE)}
notes = ["SYNTHETIC: made by `romkit demo`; the demo's stand-in for preloader-2014."]
sources = {source}
"""


def _write_7z(target: Path, package: Path) -> None:
    """A real 7z (LZMA2) of the package's folders, written atomically."""
    import py7zr  # imported here: every CLI start imports this module, few runs need 7z

    with atomic_open(target, "wb") as fh, py7zr.SevenZipFile(
            fh, "w", filters=[{"id": py7zr.FILTER_LZMA2, "preset": 1}]) as z:
        for child in sorted(package.iterdir()):
            z.writeall(child, child.name)


def shell_line(words: Sequence[str | os.PathLike[str]]) -> str:
    """One command line a user can paste into their shell (POSIX quoting; Windows quoting on
    Windows), so a workspace path with spaces still copies as one argument."""
    args = [os.fspath(w) for w in words]
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)


def env_line(name: str, value: str) -> str:
    """The shell line that sets `name` for the commands pasted after it (PowerShell on
    Windows, where it is the default shell)."""
    if os.name == "nt":  # single quotes: PowerShell expands nothing inside them
        return "$env:" + name + " = '" + value.replace("'", "''") + "'"
    return f"export {name}={shlex.quote(value)}"


def workspace_root(request: DemoRequest) -> Path:
    """Where the step commands point: the --workdir, or (dry run without one) a placeholder
    the dry run's text explains; a real run uses the workspace it created."""
    if request.workdir is not None:
        return request.workdir.expanduser().absolute()
    return Path(WORKSPACE_PLACEHOLDER)


def link_args(link: str | None) -> list[str]:
    """`--link X` when the virtual phone's cable is not the system's default (a pty)."""
    from romkit.sim.link import DEFAULT_LINK

    chosen = link or DEFAULT_LINK
    return [] if chosen == "pty" else ["--link", chosen]


def _by_hand(step_id: str, root: Path, link: str | None) -> str | None:
    """The command that does what step `step_id` does, against the workspace at `root`, with
    ROMKIT_HOME=root/home (`env_line`). None where no command does it: building the
    synthetic archive, and the final check, which reads the virtual eMMC directly."""
    firmware = root / FIRMWARE_DEST / FIRMWARE_SUBDIR
    words: dict[str, list[str | os.PathLike[str]]] = {
        "mirror": ["romkit", "catalog", "import", root / CATALOG_FILE],
        "fetch": ["romkit", "fetch", DEMO_BUILD_ID, "--dest", root / FIRMWARE_DEST],
        "phone": ["romkit", "sim", "--year", str(DEVICE_YEAR), "--state", root / PHONE_DIR,
                  *link_args(link)],
        "flash-refused": ["romkit", "flash", firmware],
        "explain": ["romkit", "explain", str(SPFT_DRAM_FAIL)],
        "prepare": ["romkit", "prepare", firmware, "--device-year", str(DEVICE_YEAR)],
        "flash": ["romkit", "flash", firmware],
    }
    return shell_line(words[step_id]) if step_id in words else None


def run_step(rep: Reporter, result: DemoResult | Any, total: int, index: int, step_id: str,
             title: str, command: str | None,
             handler: Callable[[], tuple[StepStatus, str, dict[str, Any]]],
             real_command: str | None = None) -> bool:
    """Run one numbered step of a demo story: report its start, run it, record a DemoStep in
    `result.steps` (and the error in `result.error` if it failed), report its end. Shared by
    the single-phone demo and `demo --station`; returns False when the step failed.
    `command` does the step by hand in the workspace; `real_command` is for a real phone."""
    rep.info(f"[{index}/{total}] {title}", step=step_id, phase="start", command=command,
             real_command=real_command, index=index, total=total,
             **({"env": result.env} if index == 1 else {}))
    t0 = time.monotonic()
    try:
        status, detail, data = handler()
    except (RomkitError, _StoryFailed) as exc:
        status, data = "failed", {}
        if isinstance(exc, RomkitError):
            detail = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
            result.error = exc.to_dict()
        else:
            detail = str(exc)
            result.error = {"error": "DemoCheckFailed", "message": detail, "exit_code": 1}
    step = DemoStep(id=step_id, title=title, command=command, real_command=real_command,
                    status=status, detail=detail, data=data,
                    seconds=round(time.monotonic() - t0, 3))
    result.steps.append(step)
    rep.info(detail, step=step_id, phase="done", command=command, status=status, index=index,
             total=total, record=step.model_dump(mode="json"))
    return status != "failed"


class _Story:
    """Runs the steps in order, reporting each; holds what later steps need."""

    def __init__(self, req: DemoRequest, ws: _Workspace, rep: Reporter) -> None:
        self.req = req
        self.ws = ws
        self.rep = rep
        self.stack = contextlib.ExitStack()
        self.result = DemoResult(ok=False, workdir=str(ws.root), kept=req.keep, steps=[],
                                 env=demo_env(ws.root))
        self.firmware: Path | None = None
        self.port = ""
        self.phone: VirtualPhone | None = None
        self.archive_sha = ""
        self.preloader_2014 = b""

    # -- plumbing --------------------------------------------------------------------------
    def run(self) -> DemoResult:
        handlers: dict[str, Callable[[], tuple[StepStatus, str, dict[str, Any]]]] = {
            "build": self._build, "mirror": self._mirror, "fetch": self._fetch,
            "phone": self._phone, "flash-refused": self._flash_refused,
            "explain": self._explain, "prepare": self._prepare, "flash": self._flash,
            "check": self._check,
        }
        with self.stack:
            for index, (step_id, title, real_command) in enumerate(STEPS, start=1):
                command = _by_hand(step_id, self.ws.root, self.req.link)
                if not run_step(self.rep, self.result, len(STEPS), index, step_id, title,
                                command, handlers[step_id], real_command):
                    return self.result
        self.result.ok = (self.result.first_error_code == SPFT_DRAM_FAIL
                          and bool(self.result.verified_partitions)
                          and self.result.backup_set is not None and self.result.emmc_matches)
        return self.result

    # -- steps -----------------------------------------------------------------------------
    def _build(self) -> tuple[StepStatus, str, dict[str, Any]]:
        package = self.ws.path("package")
        build_s820_folder(package, preloader=preloader_s820(2013), da=da_s820(),
                          build_id=DEMO_BUILD_ID)
        mirror = self.ws.path("mirror")
        archive = mirror / ARCHIVE_NAME
        _write_7z(archive, package)
        self.preloader_2014 = preloader_s820(DEVICE_YEAR)
        atomic_write_bytes(mirror / PRELOADER_FILE, self.preloader_2014)
        self.archive_sha = sha256_file(archive)
        size = archive.stat().st_size
        return "ok", (f"{ARCHIVE_NAME}: {size} bytes, sha256 {self.archive_sha[:16]}… "
                      f"(SYNTHETIC: ships the 2013 preloader, like the real S124 package)"), {
            "archive": str(archive), "size": size, "sha256": self.archive_sha}

    def _mirror(self) -> tuple[StepStatus, str, dict[str, Any]]:
        mirror = self.ws.path("mirror")
        server = self.stack.enter_context(LocalServer(root=mirror))
        archive_url = server.url(ARCHIVE_NAME)
        pre_url = server.url(PRELOADER_FILE)
        text = _catalog_toml(archive_url, self.archive_sha, (mirror / ARCHIVE_NAME).stat().st_size,
                             pre_url, _sha256(self.preloader_2014), len(self.preloader_2014),
                             mirror)
        catalog_file = self.ws.path(CATALOG_FILE)
        atomic_write_text(catalog_file, text)
        imported = import_catalog_file(catalog_file)
        return "ok", (f"mirror {server.base_url}; catalog adds {DEMO_BUILD_ID} and "
                      f"{DEMO_PRELOADER_ID} (for {DEVICE_YEAR} units of {DEMO_DEVICE_ID})"), {
            "base_url": server.base_url, "catalog": imported.target,
            "added": imported.added, "archive_url": archive_url, "preloader_url": pre_url}

    def _fetch(self) -> tuple[StepStatus, str, dict[str, Any]]:
        dest = self.ws.path(FIRMWARE_DEST)
        res = fetch(FetchRequest(name=DEMO_BUILD_ID, dest=dest, connections=2),
                    self.rep.callback)
        if res.firmware_folder is None or res.sha256 != self.archive_sha:
            raise _StoryFailed(f"fetch returned {res.sha256} / {res.firmware_folder}, not the "
                               f"published archive {self.archive_sha}")
        if Path(res.firmware_folder) != dest / FIRMWARE_SUBDIR:  # the later $ lines name it
            raise _StoryFailed(f"fetch unpacked to {res.firmware_folder}, not "
                               f"{dest / FIRMWARE_SUBDIR} where the step commands point")
        self.firmware = res.firmware_folder
        return "ok", (f"{res.bytes_downloaded} bytes from 127.0.0.1, sha256 verified, "
                      f"unpacked to {res.firmware_folder}"), {
            "firmware_folder": str(res.firmware_folder), "sha256": res.sha256,
            "bytes_downloaded": res.bytes_downloaded}

    def _phone(self) -> tuple[StepStatus, str, dict[str, Any]]:
        from romkit.sim.phone import VirtualPhone  # the simulator loads only when a demo runs

        phone = VirtualPhone(self.ws.path(PHONE_DIR), year=DEVICE_YEAR, link=self.req.link)
        self.port = phone.start()
        self.phone = phone
        self.stack.callback(phone.stop)
        part = s820.PARTS_BY_YEAR[DEVICE_YEAR]
        return "ok", (f"virtual S820 (MT6589, built {DEVICE_YEAR}, memory {part.product}) on "
                      f"{self.port}; on a real phone: switch it off and plug in USB"), {
            "port": self.port, "memory_part": part.label, "cid": part.cid.hex()}

    def _flash_request(self) -> FlashRequest:
        assert self.firmware is not None
        return FlashRequest(firmware_dir=self.firmware, port=self.port, wait=self.req.wait)

    def _reader(self) -> _PhoneReader:
        assert self.phone is not None
        return _PhoneReader(self.phone)

    def _flash_refused(self) -> tuple[StepStatus, str, dict[str, Any]]:
        assert self.firmware is not None
        before = self._reader().snapshot(self.firmware)
        try:
            res = flash(self._flash_request(), self.rep.callback)
        except DramInitError as exc:
            if exc.spft_code != SPFT_DRAM_FAIL:
                raise
            error = exc
        else:
            raise _StoryFailed(f"the first flash was not refused: {len(res.partitions)} "
                               "partitions written with the 2013 preloader")
        if self._reader().snapshot(self.firmware) != before:
            raise _StoryFailed("the refused flash changed the phone's storage")
        self.result.first_error_code = error.spft_code
        return "expected-error", (
            f"stopped before writing: error {error.spft_code}: {error.message}"), {
            "spft_code": error.spft_code, "message": error.message, "hint": error.hint,
            "unchanged_ranges": len(before)}

    def _explain(self) -> tuple[StepStatus, str, dict[str, Any]]:
        line = knowledge.describe(SPFT_DRAM_FAIL)
        exp = knowledge.lookup(SPFT_DRAM_FAIL)
        advice = exp.advice[0] if exp.advice else None
        data: dict[str, Any] = {"code": exp.code, "summary": line,
                                "names": [n.name for n in exp.names]}
        if advice is not None:
            data.update(cause=advice.cause, fix=advice.fix, romkit_command=advice.romkit_command)
        return "ok", line, data

    def _prepare(self) -> tuple[StepStatus, str, dict[str, Any]]:
        from romkit.prepare import PrepareRequest, prepare  # loaded only when a demo runs

        assert self.firmware is not None
        res = prepare(PrepareRequest(folder=self.firmware, device_year=DEVICE_YEAR),
                      self.rep.callback)
        pre = self.firmware / PRELOADER_NAME
        if _sha256(pre.read_bytes()) != _sha256(self.preloader_2014):
            raise _StoryFailed(f"after prepare {pre.name} is not the {DEVICE_YEAR} preloader")
        listed = _checksum_entry(self.firmware, "PRELOADER")
        wanted = int(np.frombuffer(self.preloader_2014, np.uint8).sum(dtype=np.uint64)) & 0xFFFF
        if listed != wanted:
            raise _StoryFailed(f"after prepare checksum.ini lists PRELOADER={listed}, the new "
                               f"preloader sums to 0x{wanted:04X}")
        return "ok", (f"{pre.name} replaced by {DEMO_PRELOADER_ID} (fetched from the catalog's "
                      f"mirror); checksum.ini PRELOADER=0x{wanted:04X} matches the new file"), {
            "preloader": str(pre), "checksum": wanted, "result": res.model_dump(mode="json")}

    def _flash(self) -> tuple[StepStatus, str, dict[str, Any]]:
        res: FlashResult = flash(self._flash_request(), self.rep.callback)
        verified = [p.partition for p in res.partitions if p.verified]
        if not verified or len(verified) != len(res.partitions):
            raise _StoryFailed("the flash finished without verifying every partition")
        if res.backup_set is None:
            raise _StoryFailed("the flash took no calibration backup")
        backup = find_set(res.backup_set, bytes.fromhex(res.cid) if res.cid else None)
        self.result.verified_partitions = verified
        self.result.backup_set = res.backup_set
        self.result.backup_path = str(backup.path)
        return "ok", (f"{len(verified)} partitions written and verified "
                      f"({res.bytes_written} bytes in {res.seconds:.1f} s); calibration "
                      f"backup {res.backup_set}"), {
            "partitions": verified, "bytes_written": res.bytes_written,
            "backup_set": res.backup_set, "backup_path": str(backup.path)}

    def _check(self) -> tuple[StepStatus, str, dict[str, Any]]:
        assert self.firmware is not None and self.result.backup_path is not None
        reader = self._reader()
        checked = _compare_emmc(reader, self.firmware, self.firmware / PRELOADER_NAME)
        missing = set(checked) - set(self.result.verified_partitions)
        if missing:
            raise _StoryFailed("the flash did not report writing " + ", ".join(sorted(missing)))
        nvram_start, nvram_size = _layout_sizes()["NVRAM"]
        nvram = reader.read("user", nvram_start - USER_BASE, nvram_size)
        saved = [f for f in Path(self.result.backup_path).iterdir()
                 if f.is_file() and f.read_bytes()[:len(NVRAM_TEXT)] == NVRAM_TEXT]
        if not nvram.startswith(NVRAM_TEXT) or not any(f.read_bytes() == nvram for f in saved):
            raise _StoryFailed("the calibration backup does not hold the phone's NVRAM")
        self.result.emmc_matches = True
        return "ok", (f"eMMC equals the images byte for byte ({len(checked)} partitions); "
                      "the backup holds the phone's NVRAM (IMEI record)"), {
            "partitions": checked}


def demo_env(root: Path) -> dict[str, str]:
    """The environment every step command needs: the workspace's private data dir."""
    return {"ROMKIT_HOME": str(root / HOME_DIR)}


def _planned(request: DemoRequest) -> DemoResult:
    root = workspace_root(request)
    steps = [DemoStep(id=i, title=t, command=_by_hand(i, root, request.link), real_command=c,
                      status="planned") for i, t, c in STEPS]
    return DemoResult(ok=True, dry_run=True, workdir=None, kept=False, steps=steps,
                      env=demo_env(root))


def run_demo(request: DemoRequest, on_progress: ProgressCallback | None = None) -> DemoResult:
    """Run the whole story in a private workspace; the result says whether it ended green.

    Step events are "info" progress events with data {"step", "phase" ("start"/"done"),
    "command", "index", "total"} (and the finished step as "record"); events of the libraries
    it drives (download, flash) pass through unchanged.
    """
    return run_story(request, Reporter(on_progress), lambda: _planned(request),
                     lambda ws, rep: _Story(request, ws, rep).run())


def run_story(request: DemoRequest, rep: Reporter, planned: Callable[[], Any],
              story: Callable[[_Workspace, Reporter], Any]) -> Any:
    """The frame every demo story shares: with --dry-run report the planned steps; otherwise
    run `story` in a private workspace (its own ROMKIT_HOME), removed afterwards unless
    --keep, and time it. Used by `run_demo` and `demo --station`."""
    if request.dry_run:
        result = planned()
        total = len(result.steps)
        for index, step in enumerate(result.steps, start=1):
            rep.info(f"[{index}/{total}] {step.title}", step=step.id, phase="planned",
                     command=step.command, real_command=step.real_command, index=index,
                     total=total, **({"env": result.env} if index == 1 else {}))
        return result
    t0 = time.monotonic()
    ws = _Workspace(request.workdir)
    try:
        with _demo_environment(ws.path(HOME_DIR)):
            result = story(ws, rep)
    except BaseException:
        if not request.keep:
            ws.remove()
        raise
    if not request.keep:
        ws.remove()
    result.seconds = round(time.monotonic() - t0, 3)
    return result


__all__ = ["DemoRequest", "DemoResult", "DemoStep", "run_demo"]
