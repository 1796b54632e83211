"""System images: Android sparse ↔ raw (streamed), ext4 through e2fsprogs, and the modem
set inside `/system` (find, show, replace keeping attributes).

`install_modem(system_img, modem_dir)` is the one call a script or the demo needs to put a
modem set into a system image; `romkit prepare --modem` uses it with a backup and a record.
"""

from romkit.sysimg.ext4 import (
    NotExt4Error,
    ToolMissingError,
    install_command,
    require_tools,
    tool_versions,
)
from romkit.sysimg.modemset import (
    InstalledFile,
    ModemFileInfo,
    ModemInstall,
    ModemSetInfo,
    image_form,
    install_modem,
    show_modem,
    work_space_needed,
)
from romkit.sysimg.sparse import expanded_sha256, resparse, unsparse

__all__ = [
    "InstalledFile",
    "ModemFileInfo",
    "ModemInstall",
    "ModemSetInfo",
    "NotExt4Error",
    "ToolMissingError",
    "expanded_sha256",
    "image_form",
    "install_command",
    "install_modem",
    "require_tools",
    "resparse",
    "show_modem",
    "tool_versions",
    "unsparse",
    "work_space_needed",
]
