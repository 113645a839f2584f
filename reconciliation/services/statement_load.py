"""From a statement file's bytes to rows of reconciliation_reconciliationitem, as COPY text.

The parsers are pure (bytes in, a ParsedStatement out) and spend some 8-10 us on a generic CSV row,
encoding included: a million rows is about ten seconds on one core. The CSV formats are read row by
row with no state carried from one row to the next (generic_csv, adyen_settlement_detail,
stripe_itemized_settlement), so a large CSV file is cut into pieces, each the file's preamble
(skipped lines and header) followed by a run of whole rows, and the pieces are parsed in worker
processes. Each piece's line numbers are shifted by the lines before it, so every line gets exactly
the number a parse of the whole file gives it, and the statement-level values (account, currency,
statement id, period) are merged the way each parser derives them: a value all pieces agree on, else
none.

A file is cut only where a cut cannot change what the parser reads: rows without any quote
character (a quoted field may hold a line break) and line ends that are "\\n" or "\\r\\n". Anything
else, and every other format, is parsed whole. When a piece is refused, the whole file is parsed
again so the error names exactly the place a parse of the whole file names.

Workers also turn their lines into COPY text, so the importing process only streams bytes into
PostgreSQL. Card-number-like values left in a parsed field (a reference wrapped across two lines
of an MT940 file, a digit written as an XML character reference) are replaced by their pseudonyms
here (reconciliation.services.cardlike).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from reconciliation.parsers import ParsedLine, ParsedStatement, StatementParseError, parser_for
from reconciliation.services.cardlike import has_card_like, pseudonymise_text, pseudonymise_value
from reconciliation.services.common import copy_text, gc_paused

ITEM_COLUMNS = (
    "side", "source_id", "statement_file_id", "line_no", "internal_type", "internal_id", "kind", "amount_minor",
    "currency", "gross_minor", "fee_minor", "net_minor", "value_date", "reference", "references", "counterparty",
    "description", "batch_id", "reversal", "created_at",
)  # fmt: skip
_QUOTED = ", ".join(f'"{column}"' for column in ITEM_COLUMNS)
COPY_ITEMS = f"COPY reconciliation_reconciliationitem ({_QUOTED}) FROM STDIN"
SPLITTABLE = ("generic_csv", "adyen_settlement_detail", "stripe_itemized_settlement")
# Encodings in which b"\n" is always a line end and never part of a character.
_BYTE_SAFE = {"utf8", "utf-8", "ascii", "latin1", "latin-1", "iso8859-1", "iso-8859-1", "iso-8859-15", "cp1252",
              "windows-1252"}  # fmt: skip


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # one encoder, not one per line


class SplitRefused(Exception):
    """A piece of a cut file was refused: parse the whole file instead (for the exact error)."""


@dataclass
class Summary:
    """A statement's own values (without its lines), merged over the pieces of a cut file."""

    format: str
    parser: str
    parser_version: str
    account: str
    currency: str
    statement_id: str
    period_start: dt.date | None
    period_end: dt.date | None
    opening_balance_minor: int | None
    closing_balance_minor: int | None
    notes: list[str] = field(default_factory=list)
    line_count: int = 0
    lines_total_minor: int = 0


@dataclass(frozen=True)
class Piece:
    rows: bytes  # COPY text
    count: int
    summary: Summary


def _summary(statement: ParsedStatement, lines: tuple[ParsedLine, ...]) -> Summary:
    return Summary(
        format=statement.format, parser=statement.parser, parser_version=str(statement.parser_version),
        account=statement.account, currency=statement.currency, statement_id=statement.statement_id,
        period_start=statement.period_start, period_end=statement.period_end,
        opening_balance_minor=statement.opening_balance_minor, closing_balance_minor=statement.closing_balance_minor,
        notes=list(statement.notes), line_count=len(lines), lines_total_minor=sum(line.amount_minor for line in lines),
    )  # fmt: skip


def merge(summaries: list[Summary]) -> Summary:
    """The summary a parse of the whole file would give, from the summaries of its pieces."""
    first = summaries[0]
    if len(summaries) == 1:
        return first
    with_lines = [s for s in summaries if s.line_count] or [first]

    def agreed(name: str) -> str:
        values = {getattr(s, name) for s in with_lines}
        return values.pop() if len(values) == 1 else ""

    notes: list[str] = []
    for s in summaries:
        notes.extend(n for n in s.notes if n not in notes)
    starts = [s.period_start for s in with_lines if s.period_start]
    ends = [s.period_end for s in with_lines if s.period_end]
    return Summary(
        format=first.format, parser=first.parser, parser_version=first.parser_version, account=agreed("account"),
        currency=agreed("currency"), statement_id=agreed("statement_id"), period_start=min(starts, default=None),
        period_end=max(ends, default=None), opening_balance_minor=None, closing_balance_minor=None, notes=notes,
        line_count=sum(s.line_count for s in summaries), lines_total_minor=sum(s.lines_total_minor for s in summaries),
    )  # fmt: skip


# --- lines to COPY text ----------------------------------------------------------------------------


def _null(value: int | None) -> str:
    return "\\N" if value is None else str(value)


def _plain(text: str) -> str:
    return text


def _json(references: dict, simple: bool) -> str:
    if simple:
        if not references:
            return "{}"
        if len(references) == 1:  # most lines: {"reference": ...}
            ((key, value),) = references.items()
            if type(value) is str:
                return f'{{"{key}":"{value}"}}'
        elif all(type(v) is str for v in references.values()):
            return "{" + ",".join([f'"{k}":"{v}"' for k, v in references.items()]) + "}"
    return _JSON(references)


def encode_lines(
    lines: tuple[ParsedLine, ...] | list[ParsedLine], *, offset: int, source_id: int, file_id: int, created_at: str
) -> bytes:
    """The COPY text of `lines` as EXTERNAL items (line numbers shifted by `offset`).

    The text fields of all the lines are looked at once: for card-number-like values, and for the
    characters COPY escapes (most files have none, and their lines are written without escaping)."""
    texts = [t for line in lines for t in (line.kind, line.reference, line.counterparty, line.description,
                                           line.batch_id)]  # fmt: skip
    texts.extend(str(t) for line in lines for pair in line.references.items() for t in pair)
    blob = "\x00".join(texts)  # parsers refuse NUL, so no value holds the separator
    card_like = has_card_like(blob)
    escape = copy_text if any(c in blob for c in ("\\", "\t", "\n", "\r")) else _plain
    # Without quotes or backslashes anywhere, a references dict of strings is written as JSON directly.
    simple = escape is _plain and '"' not in blob
    del texts, blob
    fixed = f"EXTERNAL\t{source_id}\t{file_id}\t"
    tail = f"\t{created_at}\n"
    out = []
    append = out.append
    days: dict[dt.date, str] = {}  # a file's lines share a few dates: each is written out once
    for line in lines:
        kind, reference, references, counterparty = line.kind, line.reference, line.references, line.counterparty
        description, batch_id = line.description, line.batch_id
        if card_like:
            kind, reference, counterparty = map(pseudonymise_text, (kind, reference, counterparty))
            description, batch_id = pseudonymise_text(description), pseudonymise_text(batch_id)
            references = pseudonymise_value(references)
        gross, fee, net = line.gross_minor, line.fee_minor, line.net_minor
        day = line.value_date or line.booking_date
        iso = days.get(day)
        if iso is None:
            iso = days[day] = day.isoformat()
        append(
            f"{fixed}{line.line_no + offset}\t\t\t{escape(kind[:32])}\t{line.amount_minor}\t{line.currency}\t"
            f"{_null(gross) if gross is None else gross}\t{_null(fee) if fee is None else fee}\t"
            f"{_null(net) if net is None else net}\t{iso}\t"
            f"{escape(reference[:140])}\t{escape(_json(references, simple))}\t{escape(counterparty[:140])}\t"
            f"{escape(description)}\t{escape(batch_id[:64])}\t{'t' if line.reversal else 'f'}{tail}"
        )
    return "".join(out).encode("utf-8")


# --- cutting a CSV file ----------------------------------------------------------------------------


def _mapping_options(parser: str, mapping: dict | None) -> tuple[int, str] | None:
    """(rows skipped before the header, encoding) of a CSV format, or None when it cannot be cut."""
    if parser not in SPLITTABLE:
        return None
    if parser != "generic_csv":
        return 0, "utf-8"
    if not isinstance(mapping, dict):
        return None
    skip, encoding = mapping.get("skip_rows", 0), mapping.get("encoding", "utf-8")
    if type(skip) is not int or skip < 0 or not isinstance(encoding, str):
        return None
    return skip, encoding


def split_csv(
    data: bytes, *, parser: str, mapping: dict | None, piece_lines: int
) -> tuple[bytes, list[tuple[bytes, int]], int] | None:
    """(preamble, [(piece, offset)], rows), or None when the file is not to be cut (see the module
    docstring). Pieces hold `piece_lines` lines each; `offset` is the number of lines before the
    piece in the rows part, so a line numbered n in its piece is line n + offset of the file."""
    options = _mapping_options(parser, mapping)
    if options is None:
        return None
    skip_rows, encoding = options
    if encoding.replace("_", "-").lower() not in _BYTE_SAFE:
        return None
    # The preamble: the skipped lines, blank lines, then the header line, found as the CSV reader
    # finds it; anything it might see otherwise (a line of non-ASCII blanks) means the file is not cut.
    position, lines_seen = 0, 0
    header_found = False
    while position < len(data):
        end = data.find(b"\n", position)
        if end < 0:
            return None  # no row after the header: nothing worth cutting
        line = data[position:end]
        if position == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # the byte order mark the parsers drop
        position, lines_seen = end + 1, lines_seen + 1
        if lines_seen <= skip_rows or not line.strip(b" \t\r"):
            continue
        try:
            if not line.decode(encoding).strip():
                return None
        except UnicodeDecodeError:
            return None  # the parser refuses it; let it say so on the whole file
        header_found = True
        break
    preamble = data[:position]
    if not header_found or preamble.count(b'"') % 2 or preamble.count(b"\r") != preamble.count(b"\r\n"):
        return None
    rows = data[position:]
    if b'"' in rows or rows.count(b"\r") != rows.count(b"\r\n"):
        return None
    lines = rows.split(b"\n")  # the last element is what follows the last line end (usually nothing)
    estimated = sum(1 for line in lines if line.strip(b" \t\r"))
    if estimated <= piece_lines:
        return None
    pieces: list[tuple[bytes, int]] = []
    for start in range(0, len(lines), piece_lines):
        chunk = lines[start : start + piece_lines]
        last = start + piece_lines >= len(lines)
        pieces.append((b"\n".join(chunk) + (b"" if last else b"\n"), start))
    return preamble, pieces, estimated


def parse_piece(args: tuple) -> Piece:
    """Parse one piece (the preamble and a run of rows) and encode its lines; runs in a worker."""
    parser, mapping, data, offset, source_id, file_id, created_at = args
    with gc_paused():
        statement = parser_for(parser).parse(data, mapping=mapping)
        rows = encode_lines(statement.lines, offset=offset, source_id=source_id, file_id=file_id,
                            created_at=created_at)  # fmt: skip
    summary = _summary(statement, statement.lines)
    if summary.opening_balance_minor is not None or summary.closing_balance_minor is not None:
        raise SplitRefused("a format with balances is never cut")  # pragma: no cover - none of SPLITTABLE has them
    return Piece(rows=rows, count=len(statement.lines), summary=summary)


# --- the pieces of a file ----------------------------------------------------------------------------


@dataclass
class Parsed:
    """What load_items streams: the encoded pieces, then (once they are all read) the summary."""

    pieces: Iterator[Piece]
    estimated_lines: int
    summary: Summary | None = None


def _whole(data: bytes, *, parser: str, mapping: dict | None, piece_lines: int, **ids) -> Parsed:
    with gc_paused():
        statement = parser_for(parser).parse(data, mapping=mapping)
    lines = statement.lines
    parsed = Parsed(pieces=iter(()), estimated_lines=len(lines), summary=_summary(statement, lines))

    def pieces() -> Iterator[Piece]:
        for start in range(0, len(lines), piece_lines):
            chunk = lines[start : start + piece_lines]
            with gc_paused():
                rows = encode_lines(chunk, offset=0, **ids)
            yield Piece(rows=rows, count=len(chunk), summary=parsed.summary)

    parsed.pieces = pieces()
    return parsed


def _can_fork() -> bool:
    # A Celery prefork child is a daemon process, and daemons may not start processes.
    return not multiprocessing.current_process().daemon and "fork" in multiprocessing.get_all_start_methods()


def parse_file(
    data: bytes, *, parser: str, mapping: dict | None, source_id: int, file_id: int, created_at: str,
    split: bool, piece_lines: int, processes: int,
) -> Parsed:  # fmt: skip
    """Parse `data` into encoded pieces, cut and in worker processes where it is safe and worth it.

    Raises StatementParseError for a file refused as a whole, SplitRefused when a piece of a cut
    file is refused (the caller starts again with split=False)."""
    ids = {"source_id": source_id, "file_id": file_id, "created_at": created_at}
    cut = split_csv(data, parser=parser, mapping=mapping, piece_lines=piece_lines) if split else None
    if cut is None:
        return _whole(data, parser=parser, mapping=mapping, piece_lines=piece_lines, **ids)
    preamble, pieces, estimated = cut
    tasks = [(parser, mapping, preamble + piece, offset, source_id, file_id, created_at) for piece, offset in pieces]
    parsed = Parsed(pieces=iter(()), estimated_lines=estimated)

    def run(results: Iterator[Piece]) -> Iterator[Piece]:
        summaries = []
        try:
            for piece in results:
                summaries.append(piece.summary)
                yield piece
        except StatementParseError as exc:
            raise SplitRefused(str(exc)) from exc
        parsed.summary = merge(summaries)

    workers = min(processes, len(tasks))
    if workers <= 1 or not _can_fork():
        parsed.pieces = run(map(parse_piece, tasks))
        return parsed

    def in_workers() -> Iterator[Piece]:
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
        try:
            yield from run(executor.map(parse_piece, tasks))
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    parsed.pieces = in_workers()
    return parsed


def default_processes() -> int:
    return max(1, os.cpu_count() or 1)
