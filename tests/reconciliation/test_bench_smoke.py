"""recon_bench works end to end on a small size (figures are printed, never asserted)."""

import io
import json

import pytest
from django.core.management import call_command

from reconciliation.models import MatchStatus


@pytest.mark.django_db
def test_the_benchmark_runs_both_sizes_and_reports_its_figures():
    out = io.StringIO()
    call_command("recon_bench", "--lines", "2000", "--json", stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert [r["lines"] for r in figures["results"]] == [2000, 4000]
    for result, details in zip(figures["results"], figures["details"], strict=True):
        assert set(result) == {"lines", "total_seconds", "match_lines_per_s"}
        assert result["total_seconds"] > 0 and result["match_lines_per_s"] > 0
        mix, found = details["expected_mix"], details["external_by_status"]
        # The generated mix is what the run found: every category where it was put
        assert found[MatchStatus.MATCHED] == mix["exact"] + mix["tolerance"] + mix["batch"] + mix["window"]
        assert found[MatchStatus.AMOUNT_MISMATCH] == mix["mismatch"]
        assert found[MatchStatus.DUPLICATE] == mix["duplicate"]
        assert found[MatchStatus.UNMATCHED_EXTERNAL] == mix["unmatched_external"]
        assert details["internal_unmatched"] == mix["unmatched_internal"]
    assert "time_ratio_2x" in figures
