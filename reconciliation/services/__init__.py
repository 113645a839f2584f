"""Reconciliation commands: the only writers of reconciliation rows."""

from reconciliation.services.expected import expected_items_refresh
from reconciliation.services.imports import statement_import, statement_import_enqueue, statement_receive
from reconciliation.services.matching import ItemsAlreadyMatched, match_manual, match_undo, reconciliation_run
from reconciliation.services.sources import source_create

__all__ = [
    "ItemsAlreadyMatched",
    "expected_items_refresh",
    "match_manual",
    "match_undo",
    "reconciliation_run",
    "source_create",
    "statement_import",
    "statement_import_enqueue",
    "statement_receive",
]
