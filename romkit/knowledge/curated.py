"""Hand-written cause / fix text for the SP Flash Tool codes people actually meet.

The numeric tables only give a symbolic name; what a user needs is why it happens on an
MT6589 phone and which romkit command avoids or repairs it. The text here is romkit's own
wording of the facts in ``spft-formats.md`` §3–§6 and ``mtk-protocol.md`` (the shared
reference), and every entry says so in `sources`.

Two kinds of entries:

* library codes (in the numeric tables): `name` is None; `versions` narrows an entry to the
  tool generations it is written for, which matters where the 3xxx numbering moved (3149 is
  an eMMC *write* failure in v3 but "eMMC not found" in v5);
* application codes (8xxx, raised by the SP Flash Tool program, not its library): they exist
  in no table, so `name` and `versions` (the generations that use them) come from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# What users are shown as the source of a curated text: public material only (the facts are
# gathered in the project's reference notes spft-formats.md / mtk-protocol.md, which do not
# ship; these strings name where those notes took them from).
_SPFT_SRC = "SP Flash Tool's own error texts (ErrorLookup.cpp and help of its v3/v5 sources)"
SPFT3 = f"romkit's reading of {_SPFT_SRC}"
SPFT_MODES = f"romkit's reading of {_SPFT_SRC} and its download-mode descriptions"
SPFT_APP = (f"romkit's reading of {_SPFT_SRC}; application codes of the tool, not in the "
            "library tables")
DRAM_SRC = (f"romkit's reading of {_SPFT_SRC}, of the preloader EMI table and of the legacy DA "
            "DRAM setup in github.com/bkerler/mtkclient and github.com/arzam16/empty-sixty-five")
CHECKSUM_SRC = f"romkit's reading of {_SPFT_SRC} and its checksum.ini handling"
PROTO_SRC = (f"romkit's reading of {_SPFT_SRC} and of the BROM / legacy DA protocol in "
             "github.com/bkerler/mtkclient")


@dataclass(frozen=True)
class Curated:
    """One piece of advice about one code (optionally for some tool generations only)."""

    code: int
    title: str
    cause: str
    fix: str
    command: str | None
    source: str = SPFT3
    versions: tuple[str, ...] = ()
    """Generations ("v3", "v5") or table versions this text is about; () = all that use it."""
    name: str | None = None
    """Symbolic name, only for application codes that are in no numeric table."""
    inferred: bool = False
    """True where the reference itself marks the reading as an inference [I]."""


CURATED: tuple[Curated, ...] = (
    # -- 1xxx: host side / common ----------------------------------------------------------------
    Curated(
        1013, "COM port could not be opened",
        "The phone's serial port exists but could not be opened: another program holds it "
        "(on Linux usually ModemManager probing the new ttyACM port), you lack permission on "
        "the device node, or the MediaTek USB VCOM driver is missing.",
        "Close other flashing tools, stop ModemManager or blacklist VID 0E8D for it, give your "
        "user access to the port (dialout/uucp group or a udev rule), then try another cable or "
        "USB port. `romkit doctor` checks each of these and prints the udev rule.",
        "romkit doctor", PROTO_SRC),
    Curated(
        1036, "EMI settings version not supported",
        "The download agent does not accept the EMI (RAM settings) format version of the "
        "firmware's preloader (MT6589 preloaders carry version 10); the DA and the preloader "
        "belong to different platforms or generations.",
        "Use the MT6589 DA and a preloader made for this phone; `romkit preloader show FILE` "
        "shows what the preloader's EMI table holds.",
        "romkit preloader show", DRAM_SRC),
    Curated(
        1037, "No valid partition table (PMT) on the phone",
        "Firmware Upgrade needs the partition table already on the phone; this phone has none "
        "(new, or its PMT was wiped or corrupted).",
        "Lay the table down with a full download. `romkit flash --mode format-all` writes a "
        "fresh PMT; it erases calibration, so it insists on a backup first (`romkit backup`).",
        "romkit flash --mode format-all", SPFT_MODES),
    Curated(
        1038, "No space found for the partition table",
        "The partition table cannot be placed on the storage as the scatter describes it.",
        "Check that the scatter belongs to this phone (`romkit inspect`), then flash with "
        "`romkit flash --mode format-all` (after `romkit backup`) so the table is rewritten.",
        "romkit flash --mode format-all", SPFT_MODES),
    # -- 2xxx: boot ROM stage ------------------------------------------------------------------
    Curated(
        2004, "Sending the download agent (DA) to the phone failed",
        "The download agent could not be uploaded into the phone's SRAM: the USB link dropped "
        "during the transfer (loose or long cable, hub), the phone browned out on a weak "
        "battery, or the DA does not suit this chip.",
        "Charge the battery, use a short cable straight into the computer, and retry. "
        "`romkit doctor` checks the port; romkit picks the DA entry for the hw code the phone "
        "reports (0x6583 for MT6589) and verifies the upload checksum.",
        "romkit doctor", PROTO_SRC),
    Curated(
        2005, "Boot ROM handshake failed",
        "The phone did not answer the boot ROM start sequence (A0 0A 50 05): it was powered up "
        "before the tool was listening, booted Android instead, or the port belongs to another "
        "mode.",
        "Switch the phone fully off, start `romkit flash` first (it waits for the port), then "
        "plug the cable into the switched-off phone; hold a volume key while plugging if it "
        "keeps booting normally. `romkit doctor` if the port never shows up.",
        "romkit flash", PROTO_SRC),
    Curated(
        2006, "Boot ROM handshake timed out",
        "The phone's port appeared but the start sequence was not answered in time, usually "
        "because the phone had already left download mode.",
        "Unplug, switch the phone off, start `romkit flash` first and plug the cable in only "
        "then, so the handshake starts the moment the port appears.",
        "romkit flash", PROTO_SRC),
    Curated(
        2035, "Jump to the download agent failed",
        "The boot ROM refused to start the uploaded download agent: nothing (or something else) "
        "was loaded at the address the host asked to jump to, typically after an incomplete "
        "DA upload.",
        "Retry with a short direct cable; romkit checks the DA upload checksum before jumping. "
        "`romkit doctor` checks the port.",
        "romkit doctor", PROTO_SRC),
    # -- 3xxx: download agent (numbering moved between versions) ---------------------------------
    Curated(
        3002, "The download agent could not set up DRAM",
        "DRAM setup inside the download agent failed: no entry of the preloader's EMI table "
        "fits this phone's memory part, or calibration with the chosen entry failed. SP Flash "
        "Tool usually reports this situation as 4032.",
        "For S820 units built in 2014 run `romkit prepare --device-year 2014`; "
        "`romkit preloader show FILE` lists the memory parts a preloader supports.",
        "romkit prepare --device-year 2014", DRAM_SRC),
    Curated(
        3012, "Storage (memory) not detected by the download agent",
        "The DA found no usable storage device: v3 names it NAND_FLASH_NOT_FOUND, v5 "
        "DEVICE_NOT_FOUND. On an eMMC phone such as the S820 this means the eMMC did not answer "
        "or the DA / scatter expects another storage type.",
        "Check that the scatter is the MT6589 eMMC one and the DA matches the chip "
        "(`romkit inspect`). If the DA reports no eMMC at all on every try, the eMMC is faulty.",
        "romkit inspect"),
    Curated(
        3144, "eMMC not found",
        "In v3 tools 3144 means the DA found no eMMC (v5 moved this name to 3149).",
        "Check that the scatter is the MT6589 eMMC one and the DA matches the chip "
        "(`romkit inspect`). If no eMMC is ever reported, the storage is faulty.",
        "romkit inspect", versions=("v3",)),
    Curated(
        3149, "eMMC write failed",
        "In v3 tools 3149 means the DA could not write to the eMMC: a worn or failing eMMC, or "
        "an image the old DA cannot write as given (a sparse image or an image type it does "
        "not know). v5 tools report the same failure as 3154.",
        "Verify the firmware folder (`romkit verify`: checksums, sizes, sparse images), then "
        "flash again; romkit retries a failed packet and stops with the exact partition and "
        "offset. Failures that repeat at the same place point to worn eMMC.",
        "romkit verify", versions=("v3",)),
    Curated(
        3149, "eMMC not found",
        "In v5 tools 3149 means the DA found no eMMC: the storage did not answer, or the DA and "
        "scatter expect another storage type. (In v3 tools this failure is 3144.)",
        "Check that the scatter is the MT6589 eMMC one and the DA matches the chip "
        "(`romkit inspect`). If the DA never reports an eMMC, the storage is faulty.",
        "romkit inspect", versions=("v5",)),
    Curated(
        3154, "eMMC write failed",
        "In v5 tools 3154 means the DA could not write to the eMMC: worn eMMC, or a sparse "
        "chunk / image type the DA cannot write. (v3 tools call this 3149.)",
        "Verify the firmware (`romkit verify`), then flash again; romkit stops with the exact "
        "partition and offset. Repeated failures at one place point to worn eMMC.",
        "romkit verify", versions=("v5",)),
    # -- 4xxx: flash tool library --------------------------------------------------------------
    Curated(
        4001, "The download agent did not respond",
        "After the jump into the download agent nothing came back: the DA does not suit the "
        "chip and crashed, the USB link dropped, or the phone reset.",
        "Use the MT6589 DA from the firmware package, a short direct cable and a charged "
        "battery, then retry. `romkit doctor` checks port and driver.",
        "romkit doctor", PROTO_SRC),
    Curated(
        4002, "Download agent sync incorrect",
        "The first byte from the download agent was not its sync byte (0xC0): the DA did not "
        "start properly, or stray bytes from another mode were still on the line.",
        "Unplug, switch the phone off and start again; use the MT6589 DA from the package. "
        "`romkit doctor` checks port and driver.",
        "romkit doctor", PROTO_SRC),
    Curated(
        4008, "Download failed",
        "A generic write failure: SP Flash Tool stopped while writing an image. The real "
        "reason is in its log; typical ones are USB dropouts, an image that does not fit its "
        "partition or a damaged image.",
        "Check the firmware with `romkit verify`, then flash again with `romkit flash`: it "
        "names the partition, offset and error, and a re-run resumes after the partitions "
        "already verified.",
        "romkit verify"),
    Curated(
        4009, "Readback failed",
        "Reading data back from the phone failed: a range outside the partition, a length not "
        "aligned to the storage's block size, or a USB dropout.",
        "`romkit readback NAME OUT_DIR` reads partitions by name from the phone's own table, so "
        "addresses and lengths cannot be wrong; run `romkit doctor` if the link drops.",
        "romkit readback"),
    Curated(
        4010, "Format failed",
        "Erasing a range failed: the range lies outside the phone's partitions, covers a "
        "protected area, or the phone has no valid partition table. (For MT6589 one blog "
        "renamed __NODL_PMT to PMT in the scatter and formatted.)",
        "Let romkit choose what to erase: `romkit flash --mode firmware-upgrade` formats only "
        "what the new layout needs and keeps calibration; a phone without a PMT needs "
        "`romkit flash --mode format-all` after `romkit backup`.",
        "romkit flash --mode firmware-upgrade", SPFT_MODES),
    Curated(
        4032, "[EMI] Enable DRAM failed",
        "The download agent needs the phone's RAM before it can flash, and takes the RAM (EMI) "
        "settings from the firmware's preloader file. That preloader's memory table does not "
        "list this phone's eMMC/DRAM part (or the DA rejected the table), so DRAM could not be "
        "enabled. Typical for Lenovo S820 units built in 2014, whose memory part is missing "
        "from the older package preloader. The preloader file is used for this even when its "
        "row is not selected for writing.",
        "Use a preloader that lists this phone's memory part: for S820 units built in 2014 run "
        "`romkit prepare --device-year 2014` (swaps in the 2014 preloader and regenerates "
        "checksum.ini). `romkit preloader show FILE` lists the parts a preloader supports; "
        "romkit refuses before writing anything when none matches.",
        "romkit prepare --device-year 2014", DRAM_SRC),
    Curated(
        4050, "Partial download refused: everything must be downloaded",
        "Downloading only some images is allowed only if all images were downloaded before "
        "and the partition layout is unchanged; one of the two does not hold.",
        "Flash the whole firmware. If the layout changed, use "
        "`romkit flash --mode firmware-upgrade`, which keeps calibration data.",
        "romkit flash --mode firmware-upgrade", SPFT_MODES),
    # -- 5xxx: download handle / load checks ---------------------------------------------------
    Curated(
        5002, "Invalid download agent file",
        "The DA file (MTK_AllInOne_DA.bin) is not a valid download agent file, is truncated, "
        "or holds no entry for this chip.",
        "Use the DA from the firmware package or SP Flash Tool; `romkit inspect FILE` shows the "
        "entries a DA file holds.",
        "romkit inspect"),
    Curated(
        5007, "An image file is not loaded",
        "A partition row is enabled but has no image file: the file is missing from the "
        "firmware folder, was renamed (modem files, for example), or the archive was not fully "
        "extracted.",
        "`romkit verify` lists every scatter row without its file and every checksum "
        "mismatch; re-fetch the firmware if files are missing.",
        "romkit verify"),
    Curated(
        5010, "Nothing selected to download",
        "The download list is empty: no partition row is selected.",
        "Select partitions; with romkit `romkit flash` takes all downloadable rows unless "
        "`--only` / `--skip` narrow it.",
        "romkit flash"),
    Curated(
        5016, "An image is larger than its partition",
        "An image does not fit its region (the space up to the next partition's start): the "
        "image comes from another build or layout, or the scatter is the wrong one.",
        "Use the scatter that came with the images; `romkit verify` compares each image's "
        "size (expanded size for sparse images) with its partition.",
        "romkit verify"),
    Curated(
        5044, "The scatter file cannot be opened",
        "The scatter file is missing, unreadable or not where the tool looked.",
        "`romkit inspect DIR` finds the *_scatter*.txt in the folder and reports parse errors "
        "with their line.",
        "romkit inspect"),
    Curated(
        5054, "[EMI] Obtain DRAM failed",
        "No usable RAM (EMI) setting for this device was found in the firmware's preloader, so "
        "the tool could not even start DRAM setup. Same root cause as 4032: the preloader does "
        "not support this phone's memory part. (Tables that call 5054 PMT_NO_SPACE swap it "
        "with 5069 and are wrong.)",
        "For S820 units built in 2014 run `romkit prepare --device-year 2014`; "
        "`romkit preloader show FILE` lists the memory parts a preloader supports.",
        "romkit prepare --device-year 2014", DRAM_SRC),
    Curated(
        5066, "The preloader file has an invalid GFH header",
        "The file given as preloader is not a flashable preloader image: a wrong file, a raw "
        "dump of the boot partition, or a truncated download.",
        "Use the preloader from the firmware package (or the 2014 one through "
        "`romkit prepare --device-year 2014`); `romkit preloader show FILE` tells a preloader "
        "image from a boot-partition dump.",
        "romkit preloader show"),
    Curated(
        5069, "Not enough space for the partition layout",
        "The layout in the scatter does not fit the phone's storage (for example a layout made "
        "for a larger eMMC).",
        "Use firmware made for this model and storage size; romkit's flash pre-flight compares "
        "the layout with the eMMC size the phone reports and refuses before writing "
        "(`romkit flash --dry-run` shows the plan).",
        "romkit flash --dry-run", inferred=True),
    Curated(
        6012, "Formatting the code area is forbidden on this phone",
        "The phone's security configuration forbids formatting the boot/code area, and the "
        "operation asked for it (typically a manual format or Format All over the "
        "bootloaders).",
        "Do not format the boot area: `romkit flash --mode firmware-upgrade` formats only what "
        "the new layout needs.",
        "romkit flash --mode firmware-upgrade"),
    # -- 8xxx: application codes (not in the numeric tables) -----------------------------------
    Curated(
        8037, "Layout changed (firmware upgrade)",
        "The firmware-upgrade flow found the phone's partition table different from the "
        "scatter.",
        "`romkit flash --mode firmware-upgrade` handles a changed layout: it backs up "
        "calibration, formats, writes the new table and restores calibration.",
        "romkit flash --mode firmware-upgrade", SPFT_APP,
        versions=("v3",), name="FT_UPGRADE_LAYOUT_CHANGED"),
    Curated(
        8038, "Layout changed: use Firmware Upgrade instead of Download",
        "Download Only compared the phone's partition table (PMT) with the scatter and found "
        "partitions that start or end elsewhere; writing images into the old layout would "
        "corrupt the phone.",
        "`romkit flash --mode firmware-upgrade`: backs up NVRAM / PRO_INFO / PROTECT_F/S, "
        "formats, writes the images and the new table, then restores the calibration.",
        "romkit flash --mode firmware-upgrade", SPFT_APP,
        versions=("v3",), name="FT_DOWNLOAD_LAYOUT_CHANGED"),
    Curated(
        8041, "checksum.ini does not match an image",
        "An image's 16-bit byte sum differs from its checksum.ini entry: the image changed "
        "(preloader swap, modem rename, re-download) without the file being updated, or it is "
        "damaged. v5 tools report this as 8416.",
        "`romkit verify` shows which images differ; if the change was intended, "
        "`romkit checksum --write` regenerates checksum.ini.",
        "romkit checksum --write", CHECKSUM_SRC,
        versions=("v3",), name="FT_CHECKSUM_NOT_MATCH"),
    Curated(
        8045, "No valid partition table (PMT) for Firmware Upgrade",
        "Firmware Upgrade needs the phone's partition table and could not read one: the phone "
        "is new or its PMT is damaged.",
        "Take a calibration backup (`romkit backup`), then `romkit flash --mode format-all` to "
        "write the whole firmware and a fresh table, and `romkit restore` the backup.",
        "romkit flash --mode format-all", SPFT_APP,
        versions=("v3",), name="FT_UPGRADE_GET_PMT_FAIL"),
    Curated(
        8100, "Phone's USB port not found",
        "The tool never saw the phone's download port: low battery, a bad cable, a hub that "
        "drops power, or no driver.",
        "Charge the phone, use a short cable straight into the computer; `romkit doctor` "
        "checks drivers, permissions and ModemManager.",
        "romkit doctor", SPFT_APP, versions=("v3", "v5"), name="FT_FIND_USB_ERROR"),
    Curated(
        8101, "Phone's USB gadget port not found",
        "The tool did not find the phone's second-stage (gadget) USB port: same causes as "
        "8100 (battery, cable, hub, driver).",
        "`romkit doctor` checks drivers, permissions and ModemManager.",
        "romkit doctor", SPFT_APP, versions=("v3", "v5"), name="FT_FIND_GADGET_USB_ERROR"),
    Curated(
        8200, "The load and the target are inconsistent",
        "The firmware is for another chip than the connected phone (the scatter's platform "
        "does not match the hw code the phone reports; MT6589 reports 0x6583).",
        "Use firmware for this phone; `romkit inspect` shows the scatter's platform and the "
        "flash pre-flight compares it with the phone before writing.",
        "romkit inspect", SPFT_APP, versions=("v3", "v5"), name="FT_DL_PLATFORM_ERROR"),
    Curated(
        8406, "Invalid memory information",
        "The tool judged the memory information invalid; on MT6589 that information is the "
        "phone's eMMC/DRAM part and the EMI table of the firmware's preloader, so the usual "
        "reason is a preloader that does not match the phone.",
        "Compare the phone's memory part with the preloader's list "
        "(`romkit preloader show FILE`); for S820 units built in 2014 run "
        "`romkit prepare --device-year 2014`.",
        "romkit prepare --device-year 2014", SPFT_APP,
        versions=("v5",), name="FT_INVALID_MEM_INFO", inferred=True),
    Curated(
        8416, "checksum.ini does not match an image",
        "An image's 16-bit byte sum differs from its checksum.ini entry, or the entry is "
        "missing (which counts as 0): the image was changed (preloader swap, modem rename, "
        "re-download) without updating checksum.ini, or it is damaged. v3 tools call this "
        "8041.",
        "`romkit verify` shows which images differ; if the change was intended, "
        "`romkit checksum --write` regenerates checksum.ini (instead of deleting it).",
        "romkit checksum --write", CHECKSUM_SRC,
        versions=("v5",), name="FT_FLASHTOOL_ERROR_CHKSUM_FAIL"),
    Curated(
        8417, "Invalid scatter file",
        "The scatter file could not be understood: edited by hand, truncated, or not a "
        "scatter file.",
        "`romkit inspect DIR` parses the scatter and names the offending line; use the "
        "scatter that came with the firmware.",
        "romkit inspect", SPFT_APP, versions=("v5",), name="FT_FLASHTOOL_INVALIDE_SCATTER"),
    Curated(
        8501, "Bootloaders must be selected together",
        "The bootloader partitions form one group: either all are selected or none.",
        "romkit keeps the group together on its own; with `--only` / `--skip`, name all "
        "bootloaders or none.",
        "romkit flash", SPFT_APP, versions=("v5",), name="ERROR_BL_INCONSISTENT"),
    Curated(
        8502, "Partition layout changed: the ROM must be downloaded",
        "The phone's partition table differs from the scatter, so a partition whose position "
        "changed must be written (SP Flash Tool then suggests Format All + Download, which "
        "also wipes IMEI and calibration).",
        "`romkit flash --mode firmware-upgrade` rewrites the layout while keeping calibration "
        "(backup → format → download → restore).",
        "romkit flash --mode firmware-upgrade", SPFT_APP,
        versions=("v5",), name="ERROR_ROM_MUST_ENABLE"),
    Curated(
        8503, "No partition table (PMT) on the phone",
        "The phone is new or its partition table is corrupted, so neither Download Only nor "
        "Firmware Upgrade can run.",
        "Take a calibration backup if anything is still readable (`romkit backup`), then "
        "`romkit flash --mode format-all` and `romkit restore`.",
        "romkit flash --mode format-all", SPFT_APP, versions=("v5",), name="PMT_UNAVAILABLE"),
    Curated(
        8504, "Data would be lost", "The v5 download flow refused because data would be lost.",
        "Back up calibration with `romkit backup` and use `romkit flash --mode "
        "firmware-upgrade`, which restores it.",
        "romkit backup", SPFT_APP, versions=("v5",), name="DATA_LOST"),
    Curated(
        8505, "Illegal address", "An image's address lies outside the storage or partition.",
        "Use the scatter that belongs to this phone; `romkit inspect` shows each partition's "
        "region and address.",
        "romkit inspect", SPFT_APP, versions=("v5",), name="ILLEGAL_ADDRESS"),
    Curated(
        8506, "Unknown ROM", "A row of the load is not a partition the flow knows.",
        "Use the scatter that came with the firmware; `romkit inspect` lists its partitions.",
        "romkit inspect", SPFT_APP, versions=("v5",), name="UNKNOWN_ROM"),
    Curated(
        8507, "Image checksum failed", "An image does not match its checksum.ini entry.",
        "`romkit verify` shows which; `romkit checksum --write` regenerates checksum.ini when "
        "the change was intended.",
        "romkit checksum --write", CHECKSUM_SRC, versions=("v5",), name="CHKSUM_FAIL"),
    Curated(
        8508, "Image file does not exist", "A selected row's image file is missing.",
        "`romkit verify` lists missing files; re-fetch the firmware if needed.",
        "romkit verify", SPFT_APP, versions=("v5",), name="FILE_NOT_EXIST"),
    # -- STATUS codes (0xC00xxxxx, v5.1648 and later) ------------------------------------------
    Curated(
        0xC0030001, "Scatter file invalid",
        "The flash library could not parse the scatter file: edited by hand, truncated, saved "
        "with another encoding, or written for a different tool / scatter version. Newer tools "
        "show this STATUS code as a negative number (-1073545215).",
        "`romkit inspect DIR` parses the scatter and names the offending line; use the "
        "scatter that came with the firmware.",
        "romkit inspect"),
    Curated(
        0xC0030004, "Preloader invalid",
        "The preloader file is not a valid preloader image (wrong file or raw dump).",
        "Use the package's preloader or `romkit prepare --device-year 2014`; "
        "`romkit preloader show FILE` checks it.",
        "romkit preloader show"),
    Curated(
        0xC003000A, "Partition layout changed",
        "The phone's partition table differs from the scatter.",
        "`romkit flash --mode firmware-upgrade` changes the layout while keeping calibration.",
        "romkit flash --mode firmware-upgrade", SPFT_MODES),
    Curated(
        0xC0040003, "Checksum error",
        "A checksum check failed: an image against checksum.ini, or data on the way to the "
        "phone.",
        "`romkit verify` checks the images; `romkit checksum --write` regenerates "
        "checksum.ini after an intended change.",
        "romkit verify", CHECKSUM_SRC),
    Curated(
        0xC0060001, "Boot ROM handshake failed",
        "STATUS form of 2005: the phone did not answer the boot ROM start sequence.",
        "Switch the phone off, start `romkit flash` first, then plug the cable in.",
        "romkit flash", PROTO_SRC),
)
