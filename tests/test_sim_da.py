"""The virtual phone's legacy DA stage and its eMMC, driven by a scripted host."""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import pytest
from sim_helpers import ACK, CONT, NACK, Host, emi_entry, emi_table, follow

from romkit.sim import s820
from romkit.sim.phone import VirtualPhone

USER = 8
BOOT1 = 1
MiB = 1024 * 1024


def test_full_session_on_a_2013_phone(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", year=2013, once=True) as phone:
        host = Host(phone.port)
        info = host.full_setup(emi_table(2013), phone.phone_id)
        assert info["cid"] == s820.PART_2013.cid
        assert (info["boot1"], info["boot2"], info["rpmb"], info["user"]) == (
            4 * MiB, 4 * MiB, 512 * 1024, 0xE9000000)
        assert info["gp"] == 0

        data = random.Random(1).randbytes(3 * 0x1000 + 0x200)  # last packet is short
        assert host.switch(USER) == ACK
        answers = host.write(USER, 0x20000000, data, packet=0x1000, spoil_first=True)
        assert answers == [NACK, CONT, CONT, CONT, CONT]  # wrong checksum → A5 → resent
        assert host.read(0x20000000, len(data), packet=0x1000) == data

        assert host.switch(BOOT1) == ACK
        boot = (b"BOOT1-DATA" * 103)[:1024]
        assert host.write(BOOT1, 0x800, boot) == [CONT]
        assert host.read(0x800, len(boot)) == boot
        host.finish()
        log = phone.wait_finished(5)

    assert log.outcome == "finish" and log.finish_mode == 0
    assert log.emi is not None and log.emi.matched == 0 and log.emi.ext_ram_ret == 0
    assert log.bytes_written == len(data) + len(boot)
    write = log.writes[0]
    assert (write.packets, write.retries, write.ok) == (4, 1, True)
    # Byte-exact check through the storage API (independent of the wire).
    assert phone.storage.read("USER", 0x20000000, len(data)) == data
    assert phone.storage.read("BOOT1", 0x800, len(boot)) == boot
    assert phone.storage.read("USER", 0x20000000 + len(data), 16) == bytes(16)


def _dram_only(phone: VirtualPhone, emi: bytes, version: int = 10) -> dict:
    host = Host(phone.port)
    host.to_da()
    assert host.storage_report() == phone.config.cid
    assert host.send_config() == 0x0BC3
    result = host.dram(emi, version)
    result["host"] = host
    return result


def test_dram_fails_on_2014_phone_with_2013_table(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", year=2014, once=True) as phone:
        result = _dram_only(phone, emi_table(2013))
        host = result["host"]
        assert result["flash_id"] == s820.PART_2014.cid
        assert result["ret"] != 0 and result["ram_size"] == 0
        # Nothing but FINISH is accepted now.
        host.w(0x60)
        assert host.byte() == NACK
        host.finish()
        log = phone.wait_finished(5)
    assert log.emi is not None and log.emi.matched is None
    assert log.emi.entries == [s820.PART_2013.cid[:9].hex()]


def test_dram_succeeds_on_2014_phone_with_table_listing_its_part(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", year=2014, once=True) as phone:
        result = _dram_only(phone, emi_table(2013, 2014))
        assert result["ret"] == 0 and result["ram_type"] == 2 and result["ram_size"] > 0
        result["host"].close()
        log = phone.wait_finished(5)
    assert log.emi is not None and log.emi.matched == 1


def test_dram_discrete_fallback_and_explicit_memory_id(tmp_path: Path) -> None:
    odd_id = bytes.fromhex("7001004b4d3847335800")  # Kingston-style, in no table
    with VirtualPhone(tmp_path / "s", memory_id=odd_id.hex(), once=True) as phone:
        assert phone.config.cid == odd_id.ljust(16, b"\x00")
        fallback = emi_entry(b"", etype=0x0002)
        result = _dram_only(phone, emi_table(2013, 2014) + fallback)
        assert result["ret"] == 0
        result["host"].close()
        assert phone.wait_finished(5).emi.matched == 2


def test_entries_after_a_type_zero_entry_are_ignored(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", year=2014, once=True) as phone:
        table = emi_table(2013) + bytes(0xB8) + emi_table(2014)
        result = _dram_only(phone, table)
        assert result["ret"] != 0
        result["host"].close()


def test_unsupported_emi_version_is_nacked(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", once=True) as phone:
        result = _dram_only(phone, emi_table(2013), version=11)
        assert result["answer"] == NACK
        result["host"].finish()
        assert phone.wait_finished(5).outcome == "finish"


def test_refusals_and_unknown_command(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", once=True) as phone:
        host = Host(phone.port)
        host.full_setup(emi_table(2013), phone.phone_id)
        assert host.switch(9) == NACK
        assert host.switch(USER) == ACK
        # Past the end of the user area, and a packet size that is not a sector multiple.
        assert host.write(USER, 0xE9000000 - 0x200, bytes(0x400)) == [NACK]
        assert host.write(USER, 0, bytes(0x400), packet=1000) == [NACK]
        with pytest.raises(LookupError, match="0xbdc"):
            host.read(0xE9000000, 0x200)
        host.w(0x33)
        assert host.byte() == 0xBB
        host.finish()
        assert phone.wait_finished(5).outcome == "finish"


def test_format_zeroes_with_progress_and_stays_sparse(tmp_path: Path) -> None:
    with VirtualPhone(tmp_path / "s", once=True) as phone:
        host = Host(phone.port)
        host.full_setup(emi_table(2013), phone.phone_id)
        assert host.switch(USER) == ACK
        data = b"\xab" * (2 * MiB)
        host.write(USER, 0x40000000, data, packet=MiB)
        percents = host.format(0x40000000 + MiB, 0x70000000)  # 1.75 GiB, mostly holes
        assert percents[-1] == 100 and percents == sorted(percents) and len(percents) > 1
        assert host.read(0x40000000, 2 * MiB) == data[:MiB] + bytes(MiB)
        host.finish()
        phone.wait_finished(5)
    # The 1.75 GiB format did not allocate gigabytes of zeros.
    assert phone.storage.allocated_bytes("USER") < 16 * MiB


def _pmt_entries(body: bytes) -> list[tuple[str, int, int]]:
    rows = []
    for name, size, offset, _mask in struct.iter_unpack("<64sQQQ", body):
        rows.append((name.rstrip(b"\x00").decode(), size, offset))
    return rows


def test_factory_pmt_and_read_pmt_follows_storage(tmp_path: Path) -> None:
    layout = [(n.removeprefix("__NODL_"), a) for n, a in s820.LAYOUT if "BMTPOOL" not in n]
    with VirtualPhone(tmp_path / "s", once=True) as phone:
        host = Host(phone.port)
        host.full_setup(emi_table(2013), phone.phone_id)
        rows = _pmt_entries(host.read_pmt())
        assert [(n, o) for n, _s, o in rows] == layout
        sizes = [b - a for (_n, a), (_m, b) in zip(layout, layout[1:], strict=False)]
        assert [s for _n, s, _o in rows] == sizes + [0]
        # The host writes a new PMT (ANDROID grown by 16 MiB): READ_PMT reports it.
        names = [n for n, _a in layout]
        new = bytearray(b"PTv1" + struct.pack("<I", 2))
        new += struct.pack("<64sQQQ", b"ANDROID", 0x5E000000, 0x17980000, 0)
        new += struct.pack("<64sQQQ", b"USRDATA", 0, 0x76580000, 0)
        assert "ANDROID" in names
        assert host.switch(USER) == ACK
        host.write(USER, 0x100000, bytes(new).ljust(0x200, b"\x00"), packet=0x200)
        assert _pmt_entries(host.read_pmt()) == [("ANDROID", 0x5E000000, 0x17980000),
                                                 ("USRDATA", 0, 0x76580000)]
        # Magic gone: no valid PMT.
        host.write(USER, 0x100000, b"XXXX".ljust(0x200, b"\x00"), packet=0x200)
        assert host.read_pmt() == b""
        host.finish()
        phone.wait_finished(5)


def test_factory_tables_and_calibration(tmp_path: Path) -> None:
    phone = VirtualPhone(tmp_path / "s", storage="8G")
    st = phone.storage
    mbr = st.read("USER", 0, 512)
    assert mbr[510:] == b"\x55\xaa"
    slots = [struct.unpack_from("<B3sB3sII", mbr, 0x1BE + 16 * i) for i in range(4)]
    types = [s[2] for s in slots]
    assert types == [0x05, 0x83, 0x83, 0x83]
    lay = dict(s820.LAYOUT)
    user = 0x1D2000000
    assert slots[0][4] * 512 == lay["EBR1"] - 0x600000
    assert slots[0][4] * 512 + slots[0][5] * 512 == user
    assert [s[4] * 512 for s in slots[1:]] == [lay["__NODL_PROTECT_F"] - 0x600000,
                                               lay["__NODL_PROTECT_S"] - 0x600000,
                                               lay["SEC_RO"] - 0x600000]
    ebr1_at = lay["EBR1"] - 0x600000
    ebr1 = st.read("USER", ebr1_at, 512)
    e = [struct.unpack_from("<B3sB3sII", ebr1, 0x1BE + 16 * i) for i in range(3)]
    assert ebr1_at + e[0][4] * 512 == lay["ANDROID"] - 0x600000
    assert e[0][5] * 512 == lay["CACHE"] - lay["ANDROID"]
    assert ebr1_at + e[1][4] * 512 == lay["CACHE"] - 0x600000
    assert (e[2][2], ebr1_at + e[2][4] * 512) == (0x05, lay["EBR2"] - 0x600000)
    ebr2_at = lay["EBR2"] - 0x600000
    ebr2 = st.read("USER", ebr2_at, 512)
    start, count = struct.unpack_from("<II", ebr2, 0x1BE + 8)
    assert ebr2_at + start * 512 == lay["USRDATA"] - 0x600000
    assert ebr2_at + (start + count) * 512 == user
    # NVRAM: the recognisable synthetic IMEI line and LD0B_001 record.
    nvram = st.read("USER", lay["__NODL_NVRAM"] - 0x600000, 4096)
    imei1, imei2 = s820.SYNTHETIC_IMEI
    assert nvram.startswith(
        f"ROMKIT-SIM NVRAM (synthetic) IMEI1={imei1} IMEI2={imei2}\n".encode())
    assert b"LD0B_001" in nvram and imei1.encode() in nvram[nvram.index(b"LD0B_001"):]
    for name in ("PROTECT_F", "PROTECT_S", "PRO_INFO"):
        head = st.read("USER", lay[f"__NODL_{name}"] - 0x600000, 64)
        assert head.startswith(f"ROMKIT-SIM {name} (synthetic)".encode())
    assert st.read("BOOT1", 0, 4) != bytes(4)  # preloader image or marker
    # 8 GB of eMMC on well under 1 MiB of disk.
    assert st.allocated_bytes("USER") < MiB
    phone.storage.close()


def test_state_survives_reconnect_and_new_phone(tmp_path: Path) -> None:
    state = tmp_path / "s"
    data = random.Random(3).randbytes(MiB + 123)
    digest = hashlib.sha256(data).hexdigest()
    data = data[:len(data) // 512 * 512]
    digest = hashlib.sha256(data).hexdigest()
    with VirtualPhone(state) as phone:  # not once: reboots onto a new port after FINISH
        host = Host(phone.port)
        host.full_setup(emi_table(2013), phone.phone_id)
        assert host.switch(USER) == ACK
        host.write(USER, 0x30000000, data, packet=0x40000)
        generation = phone.generation
        host.finish()
        host.close()
        assert phone.wait_finished(5).outcome == "finish"
        host = Host(follow(phone.phone_id, generation).port)  # where the phone came back
        host.full_setup(emi_table(2013), phone.phone_id)
        back = host.read(0x30000000, len(data))
        assert hashlib.sha256(back).hexdigest() == digest
        host.finish()
        host.close()
        assert phone.wait_finished(5).outcome == "finish"
        assert [s.index for s in phone.sessions[:2]] == [0, 1]
    again = VirtualPhone(state)
    assert hashlib.sha256(again.storage.read("USER", 0x30000000, len(data))).hexdigest() \
        == digest
    again.reset_factory()
    assert again.storage.read("USER", 0x30000000, 64) == bytes(64)
    again.storage.close()


def test_other_storage_variant_in_same_state_is_refused(tmp_path: Path) -> None:
    from romkit.errors import UsageError

    VirtualPhone(tmp_path / "s", storage="4G").storage.close()
    with pytest.raises(UsageError, match="4G phone"):
        VirtualPhone(tmp_path / "s", storage="8G")
    VirtualPhone(tmp_path / "s", storage="8G", reset=True).storage.close()


def _preloader_emi(year: int) -> bytes:
    """The EMI entries of the synthetic preloader, cut out by hand (MTK_BIN + 8 = count)."""
    from romkit.sim.artifacts import preloader_s820

    raw = preloader_s820(year)
    at = raw.index(b"MTK_BIN\x00")
    (count,) = struct.unpack_from("<I", raw, at + 8)
    return raw[at + 0xC:at + 0xC + count * 0xB8]


@pytest.mark.parametrize(("preloader_year", "ok"), [(2013, False), (2014, True)])
def test_2014_phone_with_synthetic_preloader_tables(tmp_path: Path, preloader_year: int,
                                                    ok: bool) -> None:
    pytest.importorskip("romkit.sim.artifacts")
    with VirtualPhone(tmp_path / "s", year=2014, once=True) as phone:
        result = _dram_only(phone, _preloader_emi(preloader_year))
        assert (result["ret"] == 0) is ok
        result["host"].close()


def test_factory_boot1_holds_the_boot1_form_of_the_preloader(tmp_path: Path) -> None:
    """BOOT1 checked field by field (not with the to_boot1_image the sim itself uses):
    EMMC_BOOT at 0 pointing at BRLYT at 0x200, boot region 0x800 holding the raw preloader."""
    artifacts = pytest.importorskip("romkit.sim.artifacts")
    raw = artifacts.preloader_s820(2013)
    phone = VirtualPhone(tmp_path / "s", year=2013)
    try:
        boot1 = phone.storage.read("BOOT1", 0, 0x800 + len(raw))
    finally:
        phone.storage.close()
    assert boot1[:9] == b"EMMC_BOOT" and struct.unpack_from("<I", boot1, 0x10)[0] == 0x200
    assert boot1[0x200:0x205] == b"BRLYT"
    assert struct.unpack_from("<I", boot1, 0x20C)[0] == 0x800
    assert boot1[0x800:] == raw
