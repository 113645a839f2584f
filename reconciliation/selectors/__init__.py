"""Read-side queries for the reconciliation screens. Screens read items' match state only through here."""
