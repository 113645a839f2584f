"""Reading a delimited text file into a header and rows, for the CSV-based parsers.

Nothing is sniffed: the delimiter is given, every row must have as many fields as the header, and a
malformed file is refused with the row where it went wrong. Row numbers are the file's lines as a
spreadsheet shows them (the header is row 1 unless rows are skipped before it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from reconciliation.parsers.base import StatementParseError, decode_text, excerpt


@dataclass(slots=True)  # not frozen, as ParsedLine and for the same reason: one per row
class CsvRow:
    row_no: int
    values: dict[str, str]

    def get(self, column: str | None) -> str:
        """The stripped value of a column, "" when the column is absent from the file."""
        if column is None:
            return ""
        return self.values.get(column, "").strip()

    def where(self, column: str) -> str:
        return f"row {self.row_no}, column {column!r}"


@dataclass(frozen=True)
class CsvTable:
    header: tuple[str, ...]
    header_row: int
    rows: tuple[CsvRow, ...]

    def find(self, name: str) -> str | None:
        """The header as written for a column name, ignoring case and spacing: exports re-case headers."""
        wanted = _normal(name)
        for column in self.header:
            if _normal(column) == wanted:
                return column
        return None

    def require(self, names: Iterable[str], *, what: str) -> dict[str, str]:
        """Map each required column name to its header as written, or refuse naming the first one missing."""
        found: dict[str, str] = {}
        for name in names:
            column = self.find(name)
            if column is None:
                raise StatementParseError(
                    f"expected a column named {name!r} in the {what} header; the header has "
                    f"{', '.join(repr(c) for c in self.header if c)}",
                    location=f"row {self.header_row} (header)",
                )
            found[name] = column
        return found


def _normal(name: str) -> str:
    return " ".join(name.split()).casefold()


def read_csv(data: bytes, *, what: str, delimiter: str = ",", skip_rows: int = 0, encoding: str = "utf-8") -> CsvTable:
    """Parse `data` into a header and rows. A file with a header and no rows is a valid, empty table
    (a report for a period without activity); a file without even a header is refused."""
    text = decode_text(data, encodings=(encoding,), what=what)
    stream = io.StringIO(text, newline="")
    for skipped in range(skip_rows):
        if not stream.readline():
            raise StatementParseError(
                f"expected {skip_rows} line(s) before the header, the file has only {skipped}",
                location=f"line {skipped + 1}",
            )
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    header: tuple[str, ...] | None = None
    header_row = 0
    rows: list[CsvRow] = []
    named = False  # every header column has a name: a row's values are the header zipped with it
    while True:
        row_no = skip_rows + reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise StatementParseError(f"expected well-formed CSV, found: {exc}", location=f"row {row_no}") from None
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line: exports end with them
        if header is None:
            header = tuple(column.strip() for column in record)
            header_row = row_no
            _check_header(header, row_no=row_no, what=what, delimiter=delimiter)
            named = all(header)
            continue
        if len(record) != len(header):
            raise StatementParseError(
                f"expected {len(header)} fields like the header (row {header_row}), found {len(record)}: "
                f"{excerpt(delimiter.join(record), limit=60)}",
                location=f"row {row_no}",
            )
        values = (
            dict(zip(header, record, strict=True))
            if named
            else {c: v for c, v in zip(header, record, strict=True) if c}
        )
        rows.append(CsvRow(row_no=row_no, values=values))
    if header is None:
        raise StatementParseError(f"expected a header row, found only blank lines in the {what}")
    return CsvTable(header=header, header_row=header_row, rows=tuple(rows))


def _check_header(header: tuple[str, ...], *, row_no: int, what: str, delimiter: str) -> None:
    if len(header) == 1:
        # One column means the delimiter is wrong or this is not the expected kind of file at all.
        raise StatementParseError(
            f"expected a {what} header with columns separated by {delimiter!r}, found {excerpt(header[0], limit=60)}",
            location=f"row {row_no} (header)",
        )
    seen: set[str] = set()
    for column in header:
        key = _normal(column)
        if key and key in seen:
            raise StatementParseError(
                f"expected unique column names, found {column!r} twice", location=f"row {row_no} (header)"
            )
        seen.add(key)
