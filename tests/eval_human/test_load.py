"""Through the running server: concurrent raters who double-click and race "Next" lose and misplace nothing."""

from __future__ import annotations

from benchmarks.study_load import run_load


def test_concurrent_raters_with_double_clicks_lose_and_misplace_nothing(tmp_path):
    figures = run_load(tmp_path, n_raters=4, n_items=4, seed=0, double_click=0.5, next_then_rate=0.3)
    assert figures["client errors"] == 0, figures["first errors"]
    assert figures["raters finished"] == 4
    assert figures["stored"] == 4 * 4  # every rater answered every pair of its queue
    assert figures["lost"] == 0 and figures["misplaced"] == 0 and figures["duplicate rows"] == 0
    assert figures["acknowledged (Saved.)"] + figures["refused (not saved)"] == figures["scores sent"]
    assert figures["actions"]["double click"] > 0 and figures["scores sent"] > 16  # the races happened
    assert figures["integrity_check"] == "ok"
