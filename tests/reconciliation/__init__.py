"""Statement parser tests: pure Python, no database."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "statements"


def fixture_bytes(name: str) -> bytes:
    """A real statement file from tests/fixtures/statements/, exactly as the bank or provider wrote it."""
    return (FIXTURES / name).read_bytes()
