"""Reconciliation screens: sources and files (files.py), breaks and decisions (breaks.py), matches
(matches.py, whose addresses breaks.py includes)."""
