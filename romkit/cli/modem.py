"""`romkit modem show`: the modem set of a system.img, a folder or one modem.img.

Thin shell over `romkit.sysimg.show_modem`; lets a technician compare the set a build carries
with the set they want to install before running `romkit prepare --modem`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from romkit.cli.output import JsonOpt, human_size, out, table
from romkit.sysimg import ModemSetInfo, show_modem


class ShowRequest(BaseModel):
    target: Path


def _render(info: ModemSetInfo) -> None:
    out.line(f"{info.source} ({info.form.replace('-', ' ')})")
    out.line(f"naming: {info.naming or 'unknown'}"
             + (f" (the image also holds: {', '.join(info.other_sets)})"
                if info.other_sets else ""))
    h = info.header
    if h is not None:
        out.line(f"modem: {h.describe()}")
        out.line(f"  platform {h.platform or '?'}, type {h.image_type_name or '?'}, "
                 f"build {h.build_ver or '?'}, CHECK_HEADER "
                 f"{'v' + str(h.header_version) if h.header_version is not None else 'absent'}")
    if info.files:
        rows = []
        for f in info.files:
            attrs = ""
            if f.mode is not None:
                attrs = f"{f.mode[-4:]} {f.uid}:{f.gid}"
                label = f.xattrs.get("security.selinux")
                if label:
                    attrs += f" {label}"
            rows.append([f.kind, f"{f.location.rstrip('/')}/{f.name}", human_size(f.size),
                         (f.sha256 or "")[:12], attrs])
        out.line(table(rows, ["KIND", "FILE", "SIZE", "SHA256", "ATTRIBUTES"]))
    if info.ignored:
        out.line(f"not modem files: {', '.join(info.ignored)}")
    for w in info.warnings:
        out.line(f"warning: {w}")


def register(app: typer.Typer) -> None:
    modem_app = typer.Typer(help="Modem firmware sets: show what a build or folder holds.\n\n"
                                 "Example: romkit modem show target_bin/system.img",
                            no_args_is_help=True)
    app.add_typer(modem_app, name="modem")

    @modem_app.command("show")
    def show_cmd(
        target: Annotated[Path, typer.Argument(
            help="A system.img (raw ext4 or Android sparse), a modem folder, or a modem.img.")],
        json_: JsonOpt = False,
    ) -> None:
        """The modem set, its naming (plain, 1_3g_n, …), version strings and sizes.

        Example: romkit modem show target_bin/system.img
        """
        out.use_json(json_)
        request = ShowRequest(target=target)
        info = show_modem(request.target, on_progress=out.progress)
        out.result(info, lambda: _render(info))
