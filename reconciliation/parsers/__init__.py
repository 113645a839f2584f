"""Statement parsers: bank statements and provider settlement reports to plain Python values.

Each parser is looked up by a stable name (stored with every imported file, so it must never change
meaning) and turns the uploaded bytes into a ParsedStatement or raises StatementParseError saying where
the file is wrong and what was expected there.
"""

from __future__ import annotations

from reconciliation.parsers.adyen import AdyenSettlementDetailParser
from reconciliation.parsers.base import (
    BalanceCheck,
    ParsedLine,
    ParsedStatement,
    Parser,
    StatementParseError,
    to_minor,
)
from reconciliation.parsers.camt import Camt053Parser, Camt054Parser
from reconciliation.parsers.generic_csv import GenericCsvParser
from reconciliation.parsers.mt940 import Mt940Parser
from reconciliation.parsers.stripe import StripeItemizedSettlementParser

PARSERS: dict[str, Parser] = {
    parser.name: parser
    for parser in (
        Camt053Parser(),
        Camt054Parser(),
        Mt940Parser(),
        AdyenSettlementDetailParser(),
        StripeItemizedSettlementParser(),
        GenericCsvParser(),
    )
}


class UnknownParserError(LookupError):
    """No parser of that name: a configuration error, not a bad file."""


def parser_for(name: str) -> Parser:
    try:
        return PARSERS[name]
    except (KeyError, TypeError):
        raise UnknownParserError(
            f"no statement parser named {name!r}; known parsers: {', '.join(sorted(PARSERS))}"
        ) from None


__all__ = [
    "PARSERS",
    "BalanceCheck",
    "ParsedLine",
    "ParsedStatement",
    "Parser",
    "StatementParseError",
    "UnknownParserError",
    "parser_for",
    "to_minor",
]
