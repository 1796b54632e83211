"""The one exception tree of romkit.

Every failure a user can meet is a `RomkitError` carrying three things: a one-line message
(what is wrong), a hint (what to do about it) and, where SP Flash Tool would have shown a
number for the same situation, that number (`spft_code`), so that `romkit explain N` and
forum searches lead to the same place. The CLI maps the class to an exit code:

    0 ok · 1 failure · 2 usage · 3 validation / integrity refused · 4 device / transport
    · 130 interrupted (Ctrl-C)
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_DEVICE = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd program


class RomkitError(Exception):
    """Base of every error romkit raises on purpose."""

    exit_code: int = EXIT_FAILURE
    default_hint: str = ""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        spft_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.spft_code = spft_code
        self.details = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form used by `--json` output."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint or None,
            "spft_code": self.spft_code,
            "exit_code": self.exit_code,
            "details": self.details or None,
        }


class UsageError(RomkitError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = EXIT_USAGE


class CatalogError(RomkitError):
    """A build or resource name is unknown/ambiguous, or a catalog file is malformed."""

    exit_code = EXIT_USAGE


class DiskError(RomkitError):
    """The local file system refused: read-only folder, no space, missing file."""


class DownloadError(RomkitError):
    """No candidate URL delivered the file."""


class IntegrityError(DownloadError):
    """Bytes were obtained but are not the bytes we expected (size or hash mismatch)."""

    exit_code = EXIT_REFUSED


class ArchiveError(RomkitError):
    """An archive is unsupported, corrupt or hostile; nothing was left half-unpacked."""

    exit_code = EXIT_REFUSED


class FirmwareFormatError(RomkitError):
    """A scatter / checksum.ini / preloader / DA / modem file is malformed."""

    exit_code = EXIT_REFUSED


class ValidationError(RomkitError):
    """A pre-flight or folder validation refused to go on; `findings` says why."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, *, findings: list[Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.findings = list(findings or [])

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["findings"] = [f.model_dump() if hasattr(f, "model_dump") else f for f in self.findings]
        return d


class DeviceError(RomkitError):
    """Talking to the phone failed."""

    exit_code = EXIT_DEVICE


class TransportError(DeviceError):
    """The port could not be found, opened, read or written (spft 1013 when opening)."""


class HandshakeError(DeviceError):
    """The BROM/preloader start handshake did not complete (spft 2005)."""


class ProtocolError(DeviceError):
    """The phone answered something the protocol does not allow at this point."""


class DeviceTimeout(DeviceError):
    """The phone stopped answering within the allowed time."""


class AlreadyFlashedError(DeviceError):
    """A station run met a phone (by eMMC CID) that it has already flashed."""

    exit_code = EXIT_REFUSED


class DramInitError(DeviceError):
    """The DA could not bring up DRAM with the preloader's EMI table (spft 4032)."""


class LayoutChangedError(DeviceError):
    """The phone's partition table differs from the scatter (spft 8038 / 8502)."""


class StorageError(DeviceError):
    """The phone's storage refused an operation or is smaller than the layout."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was left undone and how to pick up from there.

    A `KeyboardInterrupt` (not a `RomkitError`) so that `except Exception` never swallows it.
    Library code that knows its state raises it from `except KeyboardInterrupt:`, e.g.
    `raise Interrupted("flash stopped", left="SYSTEM, USRDATA not written",
    resume="romkit flash --only SYSTEM,USRDATA") from None`; the CLI prints
    `interrupted: flash stopped; left: …` and `hint: resume with: …` and exits 130.
    """

    exit_code: int = EXIT_INTERRUPTED

    def __init__(self, message: str = "stopped by Ctrl-C", *, left: str | None = None,
                 resume: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.left = left
        self.resume = resume
        self.details = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """Same shape as `RomkitError.to_dict`, plus `left` and `resume`."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": f"resume with: {self.resume}" if self.resume else None,
            "spft_code": None,
            "exit_code": self.exit_code,
            "details": self.details or None,
            "left": self.left,
            "resume": self.resume,
        }


def exit_code_for(exc: BaseException) -> int:
    """Exit code for any exception: RomkitErrors carry theirs, anything else is a failure."""
    if isinstance(exc, RomkitError | Interrupted):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILURE
