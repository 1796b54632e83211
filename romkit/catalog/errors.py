"""The catalog's own errors: a malformed catalog file, and two files disagreeing on a fact.

They sit at the bottom of the package (every other catalog module raises them) and subclass
`romkit.errors.CatalogError`, so callers can catch either the precise or the general error.
"""

from __future__ import annotations

from romkit.errors import EXIT_REFUSED, CatalogError


class CatalogFormatError(CatalogError):
    """A catalog file (built-in, imported, remote or the mirror list) is malformed."""

    exit_code = EXIT_REFUSED
    default_hint = "fix the file (format: docs/commands/catalog.md) or remove it"


class CatalogConflictError(CatalogFormatError):
    """Two catalog files state different values for the same fact of the same entry."""

    default_hint = ("a catalog file may add mirrors/hashes or fill unknown facts, never change "
                    "known ones: correct or remove one of the two files")
