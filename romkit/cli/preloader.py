"""`romkit preloader show|compare`: which memory parts a preloader can bring up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from romkit.cli.output import JsonOpt, out
from romkit.firmware.inspect_file import (
    compare_preloader_files,
    inspect_file,
    parse_cid,
    render_comparison,
    render_inspect_file,
)

CidOpt = Annotated[str | None, typer.Option(
    "--cid", help="The phone's eMMC CID in hex (e.g. from /sys/block/mmcblk0/device/cid): "
                  "also say whether the preloader supports that part.")]


class ShowOptions(BaseModel):
    path: Path
    cid: bytes | None = None


class CompareOptions(BaseModel):
    a: Path
    b: Path
    cid: bytes | None = None


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inspect preloaders: the memory parts (EMI table) they support."
                             "\n\nExample: romkit preloader show preloader_s820.bin",
                        no_args_is_help=True, rich_markup_mode=None)

    @group.command("show")
    def show(
        file: Annotated[Path, typer.Argument(help="preloader_*.bin or a BOOT1 dump.")],
        cid: CidOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        """Show a preloader's header and the memory parts its EMI table lists.

        Example: romkit preloader show target_bin/preloader_s820.bin
        """
        out.use_json(json_)
        opts = ShowOptions(path=file, cid=parse_cid(cid) if cid else None)
        info = inspect_file(opts.path, expect="preloader", cid=opts.cid)
        out.result(info, lambda: out.line(render_inspect_file(info)))

    @group.command("compare")
    def compare(
        a: Annotated[Path, typer.Argument(help="First preloader (A).")],
        b: Annotated[Path, typer.Argument(help="Second preloader (B).")],
        cid: CidOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        """Compare the memory parts two preloaders support.

        Typical use: the 2013 and the 2014 S820 preloader; only the 2014 one lists the
        memory chip of 2014 units.

        Example: romkit preloader compare preloader_2013.bin preloader_2014.bin
        """
        out.use_json(json_)
        opts = CompareOptions(a=a, b=b, cid=parse_cid(cid) if cid else None)
        result = compare_preloader_files(opts.a, opts.b, opts.cid)
        out.result(result, lambda: out.line(render_comparison(result)))

    app.add_typer(group, name="preloader")
