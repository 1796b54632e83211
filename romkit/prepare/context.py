"""The firmware folder being prepared and what it belongs to: loading the folder, the
build.prop-style facts it carries, and `_Context`, which lazily looks up the catalog build and
device that several steps (2014 preloader download, modem naming) need.
"""

from __future__ import annotations

from pathlib import Path

from romkit.catalog import Build, Catalog, Device
from romkit.errors import CatalogError, UsageError
from romkit.firmware.package import Firmware
from romkit.prepare.models import PrepareRequest
from romkit.progress import Reporter
from romkit.workspace import recorded_build, resolve_firmware_dir

_PROP_FILES = ("build_info.txt", "build.prop", "system/build.prop")


def _read_props(folder: Path) -> tuple[dict[str, str], str | None]:
    """build.prop-style keys from the build's own files, and which file gave them."""
    for name in _PROP_FILES:
        for base in (folder, folder.parent):
            path = base / name
            try:
                if not path.is_file() or path.stat().st_size > 1024 * 1024:
                    continue
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            props: dict[str, str] = {}
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.lstrip().startswith("#"):
                    props[key.strip()] = value.strip()
            if props:
                return props, _display(folder, path)
    return {}, None


def _display(folder: Path, path: Path) -> str:
    try:
        return path.relative_to(folder.parent).as_posix()
    except ValueError:
        return str(path)


class _Context:
    """Facts about the folder that several steps need, loaded lazily (catalog, build, …)."""

    def __init__(self, fw: Firmware, request: PrepareRequest, rep: Reporter) -> None:
        self.fw = fw
        self.request = request
        self.rep = rep
        self._catalog: Catalog | None = None
        self._build: Build | None | bool = False  # False = not looked up yet
        self.props, self.props_file = _read_props(fw.folder)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog.load(on_progress=self.rep.callback)
        return self._catalog

    def build(self) -> Build | None:
        """The catalog build this folder holds: --build, else the build `fetch` recorded for it,
    its folder names or its build id."""
        if self._build is not False:
            return self._build if isinstance(self._build, Build) else None
        found: Build | None = None
        if self.request.build:
            named = self.catalog.resolve(self.request.build, "build")
            found = named if isinstance(named, Build) else None
        else:
            folder = self.fw.folder.resolve()
            names = [recorded_build(folder) or "", folder.name, folder.parent.name,
                     folder.parent.parent.name, self.props.get("ro.build.display.id", "")]
            for name in filter(None, names):
                entry = self.catalog.find(name)
                if isinstance(entry, Build):
                    found = entry
                    break
        self._build = found
        return found

    def device(self) -> Device:
        """The device the folder is for: --device, the build's, build.prop's, or the only
        catalog device with the scatter's SoC."""
        if self.request.device:
            return self.catalog.device(self.request.device)
        build = self.build()
        if build is not None:
            return self.catalog.device(build.device)
        for key in ("ro.product.device", "ro.product.model"):
            value = self.props.get(key)
            if value:
                try:
                    return self.catalog.device(value)
                except CatalogError:
                    continue
        platform = (self.fw.layout.platform or "").upper()
        same_soc = [d for d in self.catalog.devices if (d.soc or "").upper() == platform]
        if platform and len(same_soc) == 1:
            return same_soc[0]
        raise UsageError("cannot tell which phone this firmware folder is for",
                         hint="pass --device (e.g. --device lenovo-s820) or --preloader FILE")


def _load_folder(folder: Path | None) -> Firmware:
    """The firmware folder: given (folder, a folder above it, or its scatter file), else the
    current directory, else the one `romkit fetch` recorded."""
    return Firmware.load(resolve_firmware_dir(folder))
