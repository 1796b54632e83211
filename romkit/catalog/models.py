"""The catalog's pydantic models and the value rules every catalog file must follow.

What a device, build, resource, mirror or hash *is* (fields, allowed values, cross-field
checks such as a build's date agreeing with its `_YYMMDD` name suffix), independent of which
file states it. Unknown facts are None / empty, never guessed. `_SECTIONS` maps a file's
top-level array names to these models; `_MirrorLine` is one line of a user mirror list.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SIZE = 1 << 40  # 1 TiB: no phone firmware download is bigger

Origin = Literal["user", "remote", "builtin"]
Confidence = Literal["verified", "reported", "inferred", "from-name"]
BuildKind = Literal["full", "ota"]
ResourceKind = Literal["preloader", "modem", "flash-tool", "driver"]
BUILD_KINDS: tuple[str, ...] = ("full", "ota")
RESOURCE_KINDS: tuple[str, ...] = ("preloader", "modem", "flash-tool", "driver")
KIND_LABELS = {
    "full": "full SP Flash Tool package",
    "ota": "OTA update",
    "preloader": "preloader",
    "modem": "modem files",
    "flash-tool": "flash tool",
    "driver": "USB driver",
}
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_DATE_SUFFIX_RE = re.compile(r"_(\d{2})(\d{2})(\d{2})$")
_HASH_LENGTHS = {"sha256": 64, "md5": 32}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError("must be 1-128 characters: letters, digits and . _ + - "
                         "(starting with a letter or digit)")
    return value


def _check_years(values: list[int]) -> list[int]:
    for year in values:
        if not 1990 <= year <= 2100:
            raise ValueError(f"{year} is not a plausible production year")
    return values


class Source(_Model):
    """Where a group of facts comes from, and how sure we are of it."""

    about: str = Field(max_length=300)
    ref: str = Field(max_length=500)
    confidence: Confidence


def _check_url(value: str) -> str:
    if not value.isascii() or any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F
                                  for c in value):
        raise ValueError("must be printable ASCII without spaces (percent-encode the rest)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "file"):
        raise ValueError("must start with http://, https:// or file://")
    if parts.scheme != "file" and not parts.hostname:
        raise ValueError("has no host name")
    return value


def _check_label(value: str | None) -> str | None:
    if value is not None:
        value.encode("utf-8")  # lone surrogates (from a mangled command line) are refused
    return value


class Mirror(_Model):
    """One URL a file can be downloaded from; `source` is set by the loader, not the file."""

    url: str = Field(max_length=2048)
    label: str | None = Field(default=None, max_length=200)
    source: Origin = "builtin"

    _url = field_validator("url")(staticmethod(_check_url))
    _label = field_validator("label")(staticmethod(_check_label))


class Hashes(_Model):
    """Expected digests of a download, lower-case hex; unknown ones are None."""

    sha256: str | None = None
    md5: str | None = None

    @field_validator("sha256", "md5")
    @classmethod
    def _hex(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        if value is None:
            return None
        want = _HASH_LENGTHS[info.field_name or ""]
        if len(value) != want or re.fullmatch(r"[0-9A-Fa-f]+", value) is None:
            raise ValueError(f"must be {want} hex digits (got {len(value)} characters)")
        return value.lower()

    def known(self) -> dict[str, str]:
        return {k: v for k, v in (("sha256", self.sha256), ("md5", self.md5)) if v}


class UsbId(_Model):
    """A USB identity the phone shows in one of its modes (BROM, preloader, DA)."""

    vid: int = Field(ge=0, le=0xFFFF)
    pid: int = Field(ge=0, le=0xFFFF)
    mode: str = Field(max_length=40)

    def __str__(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X} ({self.mode})"


class MemoryVariant(_Model):
    """Memory fitted to units of one production year, and the preloader they need."""

    parts: list[str] = Field(default_factory=list)
    preloader: str | None = None  # resource id; None = the preloader shipped in the build
    notes: list[str] = Field(default_factory=list)


class Device(_Model):
    id: str
    names: list[str] = Field(default_factory=list)
    vendor: str | None = None
    soc: str | None = None
    hw_code: int | None = Field(default=None, ge=0, le=0xFFFF)
    storage: str | None = None
    usb_ids: list[UsbId] = Field(default_factory=list)
    memory_by_year: dict[int, MemoryVariant] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)

    _id = field_validator("id")(staticmethod(_check_id))

    @field_validator("memory_by_year")
    @classmethod
    def _years(cls, value: dict[int, MemoryVariant]) -> dict[int, MemoryVariant]:
        _check_years(list(value))
        return value


class UpgradeStep(_Model):
    """One step from this build to a later one (`to` is a catalog id when known)."""

    kind: BuildKind | None = None
    to: str | None = None
    note: str | None = None


class Downloadable(_Model):
    """What the downloader needs from a build or a resource: a name, bytes to expect, URLs."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    device: str
    title: str | None = None
    file_name: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=1, le=MAX_SIZE)
    size_text: str | None = None  # a reported, approximate size ("711 MB"); never for checks
    hashes: Hashes = Field(default_factory=Hashes)
    mirrors: list[Mirror] = Field(default_factory=list)
    device_years: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)

    entry_type: ClassVar[str] = "entry"

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_id(value)

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, value: list[str]) -> list[str]:
        return [_check_id(v) for v in value]

    @field_validator("device_years")
    @classmethod
    def _valid_years(cls, value: list[int]) -> list[int]:
        return _check_years(value)

    @field_validator("file_name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value
                                  or value in (".", "..") or "\x00" in value):
            raise ValueError("must be a plain file name (no folders)")
        return value

    @field_validator("mirrors", mode="before")
    @classmethod
    def _mirror_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"url": v} if isinstance(v, str) else v for v in value]
        return value

    def names(self) -> list[str]:
        return [self.id, *self.aliases]


class Build(Downloadable):
    """A firmware build for a device (full SP Flash Tool package or OTA)."""

    region: Literal["ROW", "CN"] | None = None
    android: str | None = None
    android_codename: str | None = None
    date: dt.date | None = None
    languages: list[str] = Field(default_factory=list)
    kind: BuildKind | None = None
    google_play: bool | None = None
    rooted: bool | None = None
    scatter: str | None = None
    storage_variants: list[str] = Field(default_factory=list)
    problem_years: list[int] = Field(default_factory=list)
    upgrade_path: list[UpgradeStep] = Field(default_factory=list)

    entry_type: ClassVar[str] = "build"

    @field_validator("problem_years")
    @classmethod
    def _valid_problem_years(cls, value: list[int]) -> list[int]:
        return _check_years(value)

    @field_validator("scatter")
    @classmethod
    def _relative_scatter(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith(("/", "\\")) or ".." in value.split("/")):
            raise ValueError("must be a path relative to the unpacked firmware folder")
        return value

    @model_validator(mode="after")
    def _date_matches_name(self) -> Build:
        """The `_YYMMDD` suffix of a build name is a fact; a stated date must agree with it."""
        named = date_from_name(self.id)
        if named is not None and self.date is not None and named != self.date:
            raise ValueError(f"date {self.date} disagrees with the name suffix ({named})")
        return self


class Resource(Downloadable):
    """A non-build download for a device: preloader, modem files, flash tool, driver."""

    kind: ResourceKind
    version: str | None = None
    platform: str | None = None

    entry_type: ClassVar[str] = "resource"


Entry = Build | Resource
_Any = Device | Build | Resource
_SECTIONS: dict[str, type[_Any]] = {"device": Device, "build": Build, "resource": Resource}


class _MirrorLine(_Model):
    """One `[[mirror]]` line of a mirror list: which entry, which URL."""

    id: str
    url: str = Field(max_length=2048)
    label: str | None = Field(default=None, max_length=200)

    _url = field_validator("url")(staticmethod(_check_url))
    _label = field_validator("label")(staticmethod(_check_label))


def date_from_name(name: str) -> dt.date | None:
    """The date encoded in a build name's `_YYMMDD` suffix (a fact of the name), if any."""
    m = _DATE_SUFFIX_RE.search(name)
    if not m:
        return None
    try:
        return dt.date(2000 + int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
