"""Build `romkit/knowledge/codes.json` from the per-version SP Flash Tool error tables.

Run as ``python -m romkit.knowledge.build SRC_DIR [--out FILE]``. SRC_DIR holds one text file
per tool version, named ``codes_v<major>_<build>.txt`` (e.g. ``codes_v5_1648.txt``), each line
``<decimal> <hex> <SYMBOLIC_NAME>``. The numbering of the DA codes (3xxx) and of the STATUS
codes moved between tool versions, so the data file keeps, for every number, every name it
carries and the exact table versions that use that name. The JSON is committed with the
package: at run time romkit never reads the source tables, so the output is deterministic
(no timestamps, no absolute paths) and a rebuild from the same tables is byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from romkit.errors import RomkitError, UsageError
from romkit.fsutil import atomic_write_text

SCHEMA = 1
TABLE_FILE_RE = re.compile(r"^codes_v(\d{1,3})_(\d{1,6})\.txt$", re.ASCII)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", re.ASCII)
_DEC_RE = re.compile(r"^-?[0-9]{1,20}$", re.ASCII)
_HEX_RE = re.compile(r"^0[xX][0-9A-Fa-f]{1,16}$", re.ASCII)
MAX_TABLE_BYTES = 4 * 1024 * 1024
"""A real table is ~30 KB; anything near this size is not an error table."""

DEFAULT_OUT = Path(__file__).with_name("codes.json")


@dataclass(frozen=True)
class Table:
    """One parsed source table: its tool version and (code, name) rows in file order."""

    version: str
    file: str
    sha256: str
    rows: tuple[tuple[int, str], ...]

    @property
    def generation(self) -> str:
        return self.version.split(".", 1)[0]


def version_of(filename: str) -> str:
    """``codes_v5_1648.txt`` → ``v5.1648``; anything else is not a table file."""
    m = TABLE_FILE_RE.match(filename)
    if m is None:
        raise UsageError(
            f"{filename!r} is not named like an error table (codes_v<major>_<build>.txt)",
            hint="name each table after its SP Flash Tool version, e.g. codes_v5_1648.txt",
        )
    return f"v{int(m.group(1))}.{int(m.group(2))}"


def parse_table(text: str, source: str = "<table>") -> list[tuple[int, str]]:
    """Rows of one table as (unsigned 32-bit code, name).

    The decimal and hex columns must agree: a table where they differ was mangled on the way
    (or is not a table), and silently trusting either column would ship wrong answers. A
    negative decimal is accepted as the signed form of the same 32-bit value.
    """
    rows: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{source}:{lineno}"
        hint = "each line must be '<decimal> <hex> <NAME>', e.g. '4032 0xfc0 S_FT_ENABLE_DRAM_FAIL'"
        if len(fields) != 3:
            raise UsageError(f"{where}: expected 3 columns, found {len(fields)}", hint=hint)
        dec_s, hex_s, name = fields
        if not _DEC_RE.match(dec_s) or not _HEX_RE.match(hex_s):
            raise UsageError(f"{where}: {dec_s!r} / {hex_s!r} is not a decimal and a 0x hex number",
                             hint=hint)
        if not _NAME_RE.match(name):
            raise UsageError(f"{where}: {name[:60]!r} is not a symbolic code name", hint=hint)
        dec, hexv = int(dec_s, 10), int(hex_s, 16)
        if not -(2**31) <= dec <= 0xFFFFFFFF or hexv > 0xFFFFFFFF:
            raise UsageError(f"{where}: {dec_s} does not fit in 32 bits", hint=hint)
        code = dec & 0xFFFFFFFF
        if code != hexv:
            raise UsageError(f"{where}: decimal {dec_s} and hex {hex_s} disagree", hint=hint)
        rows.append((code, name))
    if not rows:
        raise UsageError(f"{source}: no codes in this table",
                         hint="point SRC_DIR at a folder of codes_vN_NNNN.txt tables "
                              "(lines of: decimal hex NAME)")
    return rows


def read_tables(src_dir: Path) -> list[Table]:
    """Every ``codes_v*_*.txt`` in `src_dir`, oldest tool version first."""
    if not src_dir.is_dir():
        raise UsageError(f"{src_dir} is not a folder",
                         hint="pass the folder holding codes_v3_1113.txt, codes_v5_1540.txt, …")
    tables: list[Table] = []
    for path in sorted(src_dir.iterdir()):
        if not path.is_file() or TABLE_FILE_RE.match(path.name) is None:
            continue
        try:
            size = path.stat().st_size
            data = b"" if size > MAX_TABLE_BYTES else path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}",
                             hint="check the folder's permissions") from exc
        if size > MAX_TABLE_BYTES:
            raise UsageError(f"{path.name} is {size} bytes, too big for a code table",
                             hint="check that SRC_DIR holds the SP Flash Tool error tables")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path.name} is not UTF-8 text",
                             hint="check that SRC_DIR holds the SP Flash Tool error tables",
                             ) from exc
        tables.append(Table(version=version_of(path.name), file=path.name,
                            sha256=hashlib.sha256(data).hexdigest(),
                            rows=tuple(parse_table(text, path.name))))
    if not tables:
        raise UsageError(f"no codes_v*_*.txt tables in {src_dir}",
                         hint="pass the folder holding codes_v3_1113.txt, codes_v5_1540.txt, …")
    tables.sort(key=lambda t: tuple(int(p) for p in t.version[1:].split(".")))
    return tables


def build_codes(src_dir: Path) -> dict[str, Any]:
    """The data document: table metadata and, per code, each name with the versions using it."""
    tables = read_tables(src_dir)
    codes: dict[int, dict[str, list[str]]] = {}
    for table in tables:
        for code, name in table.rows:
            versions = codes.setdefault(code, {}).setdefault(name, [])
            if table.version not in versions:
                versions.append(table.version)
    return {
        "schema": SCHEMA,
        "about": "SP Flash Tool error codes per tool version; generated by "
                 "`python -m romkit.knowledge.build SRC_DIR` from the error-codes tables",
        "tables": [
            {"version": t.version, "generation": t.generation, "file": t.file,
             "sha256": t.sha256, "rows": len(t.rows)}
            for t in tables
        ],
        "codes": {str(code): [[name, vers] for name, vers in codes[code].items()]
                  for code in sorted(codes)},
    }


def dumps(doc: dict[str, Any]) -> str:
    """JSON with one code per line: small diffs when a table is added, still plain JSON."""
    head = {k: v for k, v in doc.items() if k != "codes"}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append('  "codes": {')
    items = list(doc["codes"].items())
    for i, (code, names) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"    {json.dumps(code)}: {json.dumps(names, separators=(',', ':'))}{comma}")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build(src_dir: Path, out: Path = DEFAULT_OUT) -> dict[str, Any]:
    """Build and write the data file atomically; returns the document written."""
    doc = build_codes(src_dir)
    atomic_write_text(out, dumps(doc))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m romkit.knowledge.build",
        description="Regenerate romkit/knowledge/codes.json from SP Flash Tool error tables.")
    parser.add_argument("src_dir", type=Path, help="folder with codes_v<major>_<build>.txt files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON file")
    args = parser.parse_args(argv)
    try:
        doc = build(args.src_dir, args.out)
    except RomkitError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    tables = ", ".join(f"{t['version']} ({t['rows']} rows)" for t in doc["tables"])
    print(f"wrote {args.out}: {len(doc['codes'])} codes from {tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
