"""The flash engine: run a checked plan on the phone — backup, format, write, verify, restore.

Order of business, each step a safety rule learnt from bricked phones:
1. plan offline and refuse early (no phone needed for most mistakes);
2. connect — DRAM init with the firmware preloader's EMI table happens here, so a 2014 phone
   with a 2013 preloader stops with 4032 before a single byte is written;
3. check the plan against the phone (hw code, storage size, PMT) and report the final plan;
4. back up calibration before the first write (never silently skipped);
5. write each image in large checksummed packets, streamed from disk, then read it back and
   compare sum16 *and* sha256; record every verified partition in the run journal, so that a
   run stopped by a bad cable can be re-run and resumes where it stopped — but a partition
   is only skipped after reading it back from the phone (another tool may have written it
   since), and formats are always redone;
6. write the new PMT and restore calibration when the mode changes the layout, from the
   newest *good* backup: the one taken before an interrupted run erased calibration, never a
   set that read back blank.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from pydantic import BaseModel, Field

from romkit.device import protocol as P
from romkit.device.layout import PmtEntry, build_pmt_region
from romkit.errors import (
    AlreadyFlashedError,
    DeviceError,
    LayoutChangedError,
    RomkitError,
    StorageError,
    ValidationError,
)
from romkit.firmware.package import Firmware
from romkit.firmware.preloader import to_boot1_image
from romkit.flash import journal as jr
from romkit.flash.backup import BackupSet, StorageRange, When, find_set, good_set, take_backup
from romkit.flash.interrupt import Interrupted
from romkit.flash.link import (
    RangeIO,
    device_facts,
    finish_quietly,
    load_link_files,
    open_device,
    read_device_pmt,
    resolve_da,
)
from romkit.flash.plan import (
    PLATFORM_HW_CODES,
    FlashPlan,
    Operation,
    PlanOptions,
    build_plan,
    check_device,
)
from romkit.flash.streams import CompareSink, DigestSink, open_expanded
from romkit.locks import phone_lock
from romkit.progress import ProgressCallback, Reporter
from romkit.workspace import resolve_firmware_dir

RERUN_HINT = ("re-run the same command: partitions already verified (and read back equal from "
              "the phone) are skipped and the run continues from the one that failed")
FORMAT_MODES = ("firmware-upgrade", "format-all")


class FlashRequest(BaseModel):
    """Everything `romkit flash` was asked to do."""

    firmware_dir: Path | None = None
    port: str | None = None
    da: Path | None = None
    options: PlanOptions = Field(default_factory=PlanOptions)
    dry_run: bool = False
    fresh: bool = False  # ignore what an interrupted run verified: write and verify everything
    wait: float = 30.0
    packet_size: int = P.DA_PACKET_DEFAULT
    max_retries: int = 3  # per packet (NACK / bad checksum)
    trace: Path | None = None  # record every byte to/from the phone (docs/TRACE.md)
    rewrite_attempts: int = 1  # extra write+verify rounds for a partition that fails verify
    skip_cids: list[str] = Field(default_factory=list)  # station: phones already done this run


class PartitionResult(BaseModel):
    partition: str
    region: str
    offset: int
    bytes: int
    sha256: str
    sum16: int
    verified: bool
    resumed: bool = False  # skipped: verified by an earlier run and read back equal now
    rewrites: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


class FlashResult(BaseModel):
    mode: str
    dry_run: bool
    plan: FlashPlan
    port: str | None = None
    cid: str | None = None
    hw_code: int | None = None
    backup_set: str | None = None
    partitions: list[PartitionResult] = Field(default_factory=list)
    formatted: list[str] = Field(default_factory=list)
    restored: list[str] = Field(default_factory=list)
    pmt_written: bool = False
    bytes_written: int = 0
    seconds: float = 0.0
    warnings: list[str] = Field(default_factory=list)


# -- progress helpers ------------------------------------------------------------------------
class _Meter:
    """Overall byte counter with MB/s and ETA in every update (JSON consumers get them too)."""

    def __init__(self, rep: Reporter, total: int) -> None:
        self.rep = rep
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.rep.start("flash", "overall", self.total)

    def add(self, n: int) -> None:
        self.done += n
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        self.rep.update("flash", self.done, self.total, mb_per_s=round(rate / 1e6, 2),
                        eta_s=None if eta is None else round(eta, 1))


def _task_bytes(rep: Reporter, meter: _Meter, task: str) -> Callable[[int], None]:
    """A per-operation byte callback (cumulative `done`) that also feeds the overall meter."""
    state = {"last": 0}
    t0 = time.monotonic()

    def cb(done: int) -> None:
        meter.add(done - state["last"])
        state["last"] = done
        elapsed = max(time.monotonic() - t0, 1e-6)
        rep.update(task, done, mb_per_s=round(done / elapsed / 1e6, 2))

    return cb


def _op_bytes(op: Operation) -> int:
    if op.kind in ("backup", "write", "verify", "pmt", "restore"):
        return op.length or 0
    return 0


# -- the runner ------------------------------------------------------------------------------
class _Runner:
    def __init__(self, plan: FlashPlan, io_: RangeIO, rep: Reporter, req: FlashRequest,
                 cid: bytes, hw_code: int) -> None:
        self.plan = plan
        self.io = io_
        self.rep = rep
        self.req = req
        self.cid = cid
        self.hw_code = hw_code
        self.meter = _Meter(rep, sum(_op_bytes(o) for o in plan.operations))
        self.result = FlashResult(mode=plan.mode, dry_run=False, plan=plan,
                                  cid=cid.hex(), hw_code=hw_code, warnings=list(plan.warnings))
        prev = jr.load_journal(cid)
        self.prev = prev
        selection = selection_key(plan)
        self.journal = jr.new_journal(cid, plan.mode)
        self.journal.selection = selection
        if prev is not None:
            # the phone's history outlives a change of command or --fresh: an erased
            # calibration and the set that holds it stay recorded until a run completes
            self.journal.started = prev.started
            self.journal.backup_set = prev.backup_set
            self.journal.calibration_erased = prev.calibration_erased
            if prev.selection == selection and not req.fresh:
                self.journal.verified = list(prev.verified)
        self.backup: BackupSet | None = None  # taken (or carried) by this run
        self.restore_source: BackupSet | None = None  # where calibration comes back from
        self.step = "connecting"

    # -- journal ---------------------------------------------------------------------------
    def _save(self) -> None:
        jr.save_journal(self.journal)

    def _about_to_change(self, region: str, offset: int, length: int) -> None:
        if self.journal.invalidate(region, offset, length):
            self._save()

    # -- steps -----------------------------------------------------------------------------
    def run(self) -> FlashResult:
        t0 = time.monotonic()
        self.meter.start()
        self.journal.mode = self.plan.mode
        self._save()
        self._backup()
        for op in self.plan.operations:
            if op.kind == "format":
                self._format(op)
            elif op.kind == "write":
                self._write_and_verify(op)
            elif op.kind == "pmt":
                self._write_pmt(op)
            elif op.kind == "restore":
                self._restore(op)
        self.rep.end("flash", "all operations done")
        self.journal.complete = True
        self._save()
        self.result.seconds = round(time.monotonic() - t0, 3)
        self.result.bytes_written = sum(p.bytes for p in self.result.partitions
                                        if not p.resumed)
        return self.result

    def state(self) -> str:
        """One line for an interrupted run: what was left and where the safety net is."""
        parts = [f"stopped while {self.step}"]
        n = len(self.journal.verified)
        parts.append(f"{n} partition(s) verified; journal kept: {jr.journal_path(self.cid)}")
        if self.restore_source is not None:
            parts.append(f"calibration backup: {self.restore_source.path}")
        if self.journal.calibration_erased:
            parts.append("calibration is ERASED on the phone until the run is completed"
                         + (" (the rerun restores it)" if self.plan.mode == "firmware-upgrade"
                            else " (then run `romkit restore`)"))
        return "; ".join(parts)

    def _backup(self) -> None:
        self.step = "reading the calibration backup (nothing written yet)"
        ranges = [StorageRange(name=o.partition, region=o.region, offset=o.offset,
                               length=o.length or 0) for o in self.plan.operations
                  if o.kind == "backup"]
        carried = self.prev.backup_set if self.prev and self.prev.calibration_erased else None
        if carried:
            try:
                self.backup = find_set(carried, self.cid)
                self.backup.verify()
            except RomkitError:  # gone or damaged: fall through to a fresh backup
                self.backup = None
            else:
                self.rep.warning(f"an interrupted run already erased calibration; using its "
                                 f"backup {self.backup.name} instead of reading it again")
                self.meter.add(sum(r.length for r in ranges))
        if self.backup is None and ranges:
            cb = _task_bytes_overall(self.meter)
            when: When = ("after-format" if self.prev is not None
                          and self.prev.calibration_erased else
                          "before-format" if self.plan.mode in FORMAT_MODES else "before-write")
            self.backup = take_backup(self.cid, ranges, self.io.backup_reader(cb),
                                      hw_code=self.hw_code, reason=f"flash {self.plan.mode}",
                                      when=when, on_progress=self.rep)
            self.rep.info(f"calibration saved: {self.backup.name}", backup_set=self.backup.name,
                          path=str(self.backup.path))
        if not ranges and not carried:
            self.rep.warning("NO calibration backup taken (--no-backup): NVRAM/IMEI are not "
                             "saved by this run")
        self.restore_source = self.backup
        if self.backup is not None and not self.backup.good:
            good = good_set(self.cid)
            if good is not None:
                self.restore_source = good
                use = ("this run restores it" if self.plan.mode == "firmware-upgrade" else
                       f"`romkit restore {good.name}` puts it back")
                self.rep.warning(f"the calibration read from the phone is not usable "
                                 f"({self.backup.verdict}); the newest good backup of this "
                                 f"phone is {good.name} ({good.manifest.when}, "
                                 f"{good.manifest.created}): {use}")
            else:
                self.rep.warning("NO GOOD calibration backup of this phone exists: its "
                                 "calibration reads blank and nothing can bring the IMEI back "
                                 "from this computer")
        if self.restore_source is not None:
            self.result.backup_set = self.restore_source.name
            self.journal.backup_set = str(self.restore_source.path)
            self._save()

    def _format(self, op: Operation) -> None:
        """Always done, also on a re-run: a format is cheap and idempotent, and the phone
        may have been written by another tool since the interrupted run formatted it."""
        key = f"{op.region}:{op.offset:x}:{op.length:x}"
        self.step = f"formatting {op.partition}"
        length = op.length or 0
        self._about_to_change(op.region, op.offset, length)
        if _touches_calibration(self.plan, op):
            self.journal.calibration_erased = True
            self._save()
        task = f"format:{op.partition}"
        self.rep.start(task, f"format {op.partition}", 100, unit="%")
        self.io.format(op.region, op.offset, length,
                       on_percent=lambda pct: self.rep.update(task, pct, 100, unit="%"))
        self.rep.end(task)
        self.journal.formatted.append(key)
        self._save()
        self.result.formatted.append(op.partition)

    def _open_source(self, op: Operation, stack: ExitStack) -> BinaryIO:
        """The bytes `op` puts on the phone, as a stream: the file, the preloader in its BOOT1
        wrapping, or a sparse image's expanded stream (built chunk by chunk as the DA pulls
        packets, never whole in memory or on disk; the read-back compares against a fresh
        expansion the same way)."""
        assert op.source is not None
        if op.boot1:
            return io.BytesIO(to_boot1_image(Path(op.source).read_bytes()))
        fh = stack.enter_context(Path(op.source).open("rb"))  # noqa: SIM115 (stack closes it)
        if op.sparse:
            return cast(BinaryIO, open_expanded(fh, Path(op.source).name))
        return fh

    def _write_and_verify(self, op: Operation) -> None:
        length = op.length or 0
        assert op.sha256 is not None and op.sum16 is not None
        if self.journal.is_verified(op.partition, op.region, op.offset, length, op.sha256):
            # the journal is a hint: prove it on the phone (a read is cheap next to a write)
            self.step = f"reading back {op.partition} to check the interrupted run's write"
            self.meter.total += length
            mismatch = self._verify(op, length)
            if mismatch is None:
                self.rep.info(f"{op.partition}: verified by the interrupted run and read back "
                              "equal from the phone, skipped")
                self.meter.add(length * (2 if self.plan.options.verify else 1))
                self.result.partitions.append(PartitionResult(
                    partition=op.partition, region=op.region, offset=op.offset, bytes=length,
                    sha256=op.sha256, sum16=op.sum16, verified=True, resumed=True))
                return
            self.rep.warning(f"{op.partition}: the journal says it was verified, but the phone "
                             f"holds other bytes (first at +0x{mismatch:X}): writing it again")
        t0 = time.monotonic()
        rewrites = 0
        while True:
            self._about_to_change(op.region, op.offset, length)
            self._write(op, length)
            if not self.plan.options.verify:
                verified = False
                break
            mismatch = self._verify(op, length)
            if mismatch is None:
                verified = True
                self.journal.record(op.partition, op.region, op.offset, length, op.sha256)
                self._save()
                break
            if rewrites >= self.req.rewrite_attempts:
                raise StorageError(
                    f"verify of {op.partition} failed: the phone holds different bytes at "
                    f"{op.region} offset 0x{op.offset + mismatch:X} (partition offset "
                    f"0x{mismatch:X}) after {rewrites + 1} write(s)",
                    hint="try another USB cable or port (no hub), then " + RERUN_HINT
                    + "; if it keeps failing at the same offset the eMMC may be worn",
                    spft_code=4008,
                    details={"partition": op.partition, "region": op.region,
                             "offset": op.offset + mismatch})
            rewrites += 1
            self.rep.warning(f"{op.partition}: read-back differs at +0x{mismatch:X}; writing "
                             f"it again ({rewrites}/{self.req.rewrite_attempts})")
            self.meter.total += length * 2
        self.result.partitions.append(PartitionResult(
            partition=op.partition, region=op.region, offset=op.offset, bytes=length,
            sha256=op.sha256, sum16=op.sum16, verified=verified, rewrites=rewrites,
            seconds=round(time.monotonic() - t0, 3)))

    @contextmanager
    def _transfer(self, op: Operation, length: int, kind: str,
                  action: str) -> Iterator[tuple[ExitStack, Callable[[int], None]]]:
        """One progress task for a write or read-back of `op`, and device errors located at
        the partition and offset reached (so the message says where a re-run resumes)."""
        task = f"{kind}:{op.partition}"
        self.rep.start(task, f"{kind} {op.partition}", length)
        progress = _task_bytes(self.rep, self.meter, task)
        last = {"done": 0}

        def on_bytes(done: int) -> None:
            last["done"] = done
            progress(done)

        try:
            with ExitStack() as stack:
                yield stack, on_bytes
        except DeviceError as exc:
            raise _located(exc, op, last["done"], action) from exc

    def _write(self, op: Operation, length: int) -> None:
        self.step = (f"writing {op.partition} ({op.region} 0x{op.offset:X}; the rerun writes "
                     "it again)")
        with self._transfer(op, length, "write", "writing") as (stack, on_bytes):
            src = self._open_source(op, stack)
            got = self.io.write(op.region, op.offset, src, length, on_bytes)
        self.rep.end(f"write:{op.partition}")
        if got != op.sum16:
            raise StorageError(
                f"{op.partition}: the data sent sums to 0x{got:04X}, the image to "
                f"0x{op.sum16:04X} — the image file changed while flashing",
                hint="keep the firmware folder unchanged during a flash, then " + RERUN_HINT,
                spft_code=8416, details={"partition": op.partition})

    def _verify(self, op: Operation, length: int) -> int | None:
        """Read back; None if sum16 and sha256 both match, else the first differing offset."""
        task = f"verify:{op.partition}"
        if not self.step.startswith("reading back"):
            self.step = f"reading back {op.partition} (written, not yet verified)"
        with self._transfer(op, length, "verify", "reading back") as (stack, on_bytes):
            sink = CompareSink(self._open_source(op, stack))
            got = self.io.read(StorageRange(name=op.partition, region=op.region,
                                            offset=op.offset, length=length), sink, on_bytes)
        ok = (got == op.sum16 and sink.sum16 == op.sum16 and sink.sha256 == op.sha256
              and sink.first_mismatch is None and sink.length == length)
        self.rep.end(task, f"verified {op.partition}: sum16 0x{sink.sum16:04X}, sha256 "
                           f"{sink.sha256[:16]}…" if ok else "")
        if ok:
            return None
        return sink.first_mismatch if sink.first_mismatch is not None else 0

    def _write_pmt(self, op: Operation) -> None:
        table = build_pmt_region(PmtEntry(name=r.name, size=r.size, offset=r.offset)
                                 for r in self.plan.expected_pmt())
        self.step = "writing the partition table (PMT)"
        self._about_to_change(op.region, op.offset, len(table))
        self._write_blob(op.partition, op.region, op.offset, table, "partition table")
        self.result.pmt_written = True

    def _restore(self, op: Operation) -> None:
        src = self.restore_source
        if src is None:
            raise StorageError(f"cannot restore {op.partition}: no backup set in this run",
                               hint="run `romkit restore` with the set taken before the format")
        entry = src.entry(op.partition)
        if entry is None:
            self.rep.warning(f"{op.partition} is not in backup {src.name}; not restored")
            return
        self.step = f"restoring calibration {op.partition} from {src.path}"
        data = src.file_of(entry).read_bytes()
        self._about_to_change(op.region, op.offset, len(data))
        self._write_blob(op.partition, op.region, op.offset, data, "calibration")
        self.result.restored.append(op.partition)

    def _write_blob(self, name: str, region: str, offset: int, data: bytes, what: str) -> None:
        """Write a small in-memory blob and prove it by readback (sha256)."""
        want = DigestSink()
        want.write(data)
        task = f"{what}:{name}"
        self.rep.start(task, f"write {what} {name}", len(data))
        progress = _task_bytes(self.rep, self.meter, task)
        op = Operation(kind="write", partition=name, region=region, offset=offset,
                       length=len(data))
        try:
            self.io.write(region, offset, io.BytesIO(data), len(data), progress)
            back = DigestSink()
            self.io.read(StorageRange(name=name, region=region, offset=offset,
                                      length=len(data)), back, None)
        except DeviceError as exc:
            raise _located(exc, op, 0, f"writing {what} to") from exc
        self.rep.end(task)
        if back.sha256 != want.sha256:
            raise StorageError(f"{what} {name} reads back different from what was written",
                               hint="try another USB cable or port, then " + RERUN_HINT,
                               spft_code=4008, details={"partition": name})
        self.rep.info(f"verified {what} {name} ({len(data)} bytes, sha256 "
                      f"{want.sha256[:16]}…)")


def _task_bytes_overall(meter: _Meter) -> Callable[[int], None]:
    """Backup ranges report cumulative bytes per range; turn that into meter increments."""
    state = {"last": 0}

    def cb(done: int) -> None:
        if done < state["last"]:
            state["last"] = 0
        meter.add(done - state["last"])
        state["last"] = done

    return cb


def selection_key(plan: FlashPlan) -> str:
    """Which command a journal's entries belong to: the mode and the partitions written.
    `--only boot` after an interrupted full run is another command and writes boot."""
    return f"{plan.mode}:" + ",".join(sorted(i.partition for i in plan.images))


def _touches_calibration(plan: FlashPlan, op: Operation) -> bool:
    end = op.offset + (op.length or 0)
    return any(c.region == op.region and c.offset < end and op.offset < c.offset + c.length
               for c in plan.calibration)


def _located(exc: DeviceError, op: Operation, done: int, action: str) -> DeviceError:
    """The same kind of error, now saying which partition and where, and how to resume."""
    offset = exc.details.get("offset", op.offset + done)
    new = type(exc)(
        f"{action} {op.partition} failed at {op.region} offset 0x{offset:X}: {exc.message}",
        hint=(exc.hint + " " if exc.hint else "") + "Then " + RERUN_HINT + ".",
        spft_code=exc.spft_code,
        details={**exc.details, "partition": op.partition, "region": op.region,
                 "offset": offset},
    )
    return new


# -- public entry points ---------------------------------------------------------------------
def load_firmware(firmware_dir: Path | None) -> Firmware:
    return Firmware.load(resolve_firmware_dir(firmware_dir))


def flash(request: FlashRequest, on_progress: ProgressCallback | None = None) -> FlashResult:
    """Plan, check and run a flash; with `dry_run` nothing is written (no phone needed
    unless `port` is given, in which case the phone's facts are checked too)."""
    rep = Reporter(on_progress)
    fw = load_firmware(request.firmware_dir)
    plan = build_plan(fw, request.options, rep)
    for w in plan.warnings:
        rep.warning(w)
    if request.dry_run and request.port is None:
        rep.info("plan", plan=plan.model_dump(mode="json"))
        return FlashResult(mode=plan.mode, dry_run=True, plan=plan, warnings=plan.warnings)
    da_path = resolve_da(request.da, fw.flash_tool_dir)
    da, pre = load_link_files(da_path, Path(plan.preloader))
    try:
        dev = open_device(request.port, da, pre, Path(plan.preloader), wait=request.wait,
                          rep=rep,
                          expected_hw_code=PLATFORM_HW_CODES.get((plan.platform or "").upper()),
                          trace=request.trace)
    except KeyboardInterrupt:
        raise Interrupted("stopped while connecting to the phone; nothing was read or "
                          "written") from None
    if dev.cid.hex().upper() in {c.upper() for c in request.skip_cids}:
        finish_quietly(dev)
        raise AlreadyFlashedError(
            f"phone {dev.cid.hex()} was already flashed in this station run; not writing it "
            f"again", hint="unplug it; to flash it once more, start the station with --reflash",
            details={"cid": dev.cid.hex(), "port": dev.port})
    prev: jr.RunJournal | None = None
    try:
        pmt = read_device_pmt(dev, rep)
        prev = jr.load_journal(dev.cid)
        n_warn = len(plan.warnings)
        plan = check_device(plan, device_facts(dev, pmt),
                            layout_erased_by_romkit=prev is not None
                            and prev.mode in FORMAT_MODES)
        for w in plan.warnings[n_warn:]:
            rep.warning(w)
    except LayoutChangedError as exc:
        finish_quietly(dev)
        if prev is not None and prev.mode in FORMAT_MODES and exc.spft_code == 8503:
            raise LayoutChangedError(
                f"{exc.message}: an interrupted `--mode {prev.mode}` run of this phone erased "
                "it", hint=f"run the same `romkit flash --mode {prev.mode}` command again: it "
                "writes the partition table from the scatter and finishes the run",
                spft_code=exc.spft_code, details=exc.details) from exc
        raise
    except ValidationError:
        finish_quietly(dev)
        raise
    except KeyboardInterrupt:
        dev.close()
        raise Interrupted("stopped while checking the phone; nothing was written") from None
    except BaseException:
        dev.close()
        raise
    rep.info("plan", plan=plan.model_dump(mode="json"))
    if request.dry_run:
        finish_quietly(dev)
        return FlashResult(mode=plan.mode, dry_run=True, plan=plan, port=dev.port,
                           cid=dev.cid.hex(), hw_code=dev.hw_code, warnings=plan.warnings)
    try:
        with phone_lock(dev.cid.hex(), "flash"):
            runner = _Runner(plan, RangeIO(dev, request.packet_size, request.max_retries), rep,
                             request, dev.cid, dev.hw_code)
            try:
                result = runner.run()
            except KeyboardInterrupt:
                raise Interrupted(runner.state()) from None
        result.port = dev.port
        try:
            dev.session.finish(P.FINISH_NORMAL)
        except DeviceError as exc:
            result.warnings.append(f"everything is written and verified, but the phone did "
                                   f"not acknowledge FINISH ({exc.message}): unplug it")
    finally:
        dev.close()
    good = runner.restore_source is not None and runner.restore_source.good
    if plan.mode == "format-all" and good:
        result.warnings.append(f"calibration was erased; put it back with `romkit restore "
                               f"{result.backup_set}`")
    elif plan.mode == "format-all":
        result.warnings.append("calibration was erased and no good backup of it exists on "
                               "this computer (`romkit restore --list`)")
    return result
