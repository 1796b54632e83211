"""Builders for clearly synthetic MT6589 modem files (tests and the demo).

Real modem images are vendor binaries we can neither ship nor use in tests. These files have
the same *shape* where it matters to romkit - the four kinds of file with their real naming,
and a modem image ending in a CHECK_HEADER trailer that carries a platform string and a 2G/3G
image type - and say "ROMKIT SYNTHETIC" in their own bytes so nobody mistakes them for a real
modem. Output is deterministic (SHAKE-256 of a seed made from the arguments).

The trailer is packed here from this module's own field list; `romkit.firmware.modem` parses
it independently, and the tests check both against hand-packed bytes.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Literal

from romkit.errors import UsageError
from romkit.fsutil import atomic_write_bytes

MODEM_MARKER = b"ROMKIT SYNTHETIC MODEM - test artifact, not a real modem firmware"
DEFAULT_PLATFORM = "MT6589_S00"
DEFAULT_BUILD = "MOLY.WR8.W1248.MD.WG.MP.V9"
IMAGE_TYPE_2G = 1
IMAGE_TYPE_3G = 2
_SUFFIX = "_1_3g_n"


def _filler(seed: str, n: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(n) if n > 0 else b""


def check_header(platform: str = DEFAULT_PLATFORM, image_type: int = IMAGE_TYPE_3G, *,
                 build_ver: str = DEFAULT_BUILD, bind_sys_id: int = 1,
                 image_size: int = 0) -> bytes:
    """The CHECK_HEADER trailer: magic, version 1, release build, image type, platform,
    build time, build version, MD system id, sizes, and its own length last."""
    fields = [
        b"CHECK_HEADER",
        struct.pack("<III", 1, 0x2, image_type),
        platform.encode("ascii")[:15].ljust(16, b"\x00"),
        b"2014/04/04 00:00 ROMKIT SYNTHETIC".ljust(64, b"\x00"),
        build_ver.encode("ascii")[:63].ljust(64, b"\x00"),
        struct.pack("<BB2s", bind_sys_id, 0, b"\x00\x00"),
        struct.pack("<III", 0x1800000, image_size, 0),
    ]
    body = b"".join(fields)
    return body + struct.pack("<I", len(body) + 4)


def modem_image(platform: str = DEFAULT_PLATFORM, image_type: int = IMAGE_TYPE_3G, *,
                size: int = 64 * 1024, trailer: bool = True,
                build_ver: str = DEFAULT_BUILD) -> bytes:
    """A synthetic modem.img of exactly `size` bytes, ending in a CHECK_HEADER trailer."""
    tail = check_header(platform, image_type, build_ver=build_ver,
                        image_size=size) if trailer else b""
    head = MODEM_MARKER + f" :: {platform} type {image_type}".encode() + b"\x00"
    if size < len(head) + len(tail):
        raise UsageError(f"a synthetic modem image needs at least {len(head) + len(tail)} bytes",
                         hint="use a larger size")
    body = _filler(f"romkit-modem|{platform}|{image_type}|{build_ver}",
                   size - len(head) - len(tail))
    return head + body + tail


def _text_file(kind: str, platform: str, n: int) -> bytes:
    head = MODEM_MARKER + f" :: {kind} for {platform}".encode() + b"\n"
    return head + _filler(f"romkit-{kind}|{platform}", n)


def modem_file_names(platform: str = DEFAULT_PLATFORM,
                     naming: Literal["plain", "1_3g_n"] = "plain") -> dict[str, str]:
    """kind → file name of a synthetic modem set, named as Jelly Bean or KitKat builds do."""
    sfx = _SUFFIX if naming == "1_3g_n" else ""
    build = f"{platform}_MOLY_WR8_W1248_MD_WG_MP_V9_F1_P2"
    return {
        "modem": f"modem{sfx}.img",
        "catcher_filter": f"catcher_filter{sfx}.bin",
        "bplguinfo": f"BPLGUInfoCustomAppSrcP_{build}{sfx}",
        "dbginfo": f"DbgInfo_{build}{sfx}",
    }


def modem_files(platform: str = DEFAULT_PLATFORM, image_type: int = IMAGE_TYPE_3G,
                naming: Literal["plain", "1_3g_n"] = "plain") -> dict[str, bytes]:
    """file name → bytes of the four files of a synthetic modem set."""
    names = modem_file_names(platform, naming)
    return {
        names["modem"]: modem_image(platform, image_type),
        names["catcher_filter"]: _text_file("catcher_filter", platform, 2048),
        names["bplguinfo"]: _text_file("BPLGUInfo", platform, 4096),
        names["dbginfo"]: _text_file("DbgInfo", platform, 4096),
    }


def build_modem_folder(dest: Path, *, platform: str = DEFAULT_PLATFORM,
                       image_type: int = IMAGE_TYPE_3G,
                       naming: Literal["plain", "1_3g_n"] = "plain") -> Path:
    """Write a synthetic modem set into `dest` (created) and return `dest`."""
    for name, data in modem_files(platform, image_type, naming).items():
        atomic_write_bytes(Path(dest) / name, data)
    return Path(dest)
