"""End to end: create a study from the command line, rate through the running app with two tokens, export, stats."""

from __future__ import annotations

import json
import socket
import zlib

import gradio as gr
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from eval_human.__main__ import main
from eval_human.store import StudyStore
from eval_human.ui import build_rating_app, build_rating_tab

# Positions of the outputs of /rate, /previous, /next, /resume (see ui.build_rating_tab's view_outputs).
STATUS, PROGRESS, IMAGE, REPORT, REALISM, PLAUSIBILITY, COMMENT, CURRENT = range(8)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _score_for(report: str, rater: str) -> int:
    """Deterministic per-report scores; the second rater sometimes answers one step higher."""
    base = 1 + zlib.crc32(report.encode()) % 5
    return min(base + (1 if rater == "r2" and base % 2 else 0), 5)


def test_study_from_cli_to_agreement_numbers(tmp_path, pair_sources, capsys):
    db = tmp_path / "e2e.db"
    code = main(
        [
            "create-study", "--db", str(db), "--name", "e2e",
            "--source", str(pair_sources["medim"]), "--source", str(pair_sources["baseline"]),
            "--ratio", "1:1", "--n-items", "4", "--real", str(pair_sources["real"]), "--n-real", "1",
            "--attention-checks", "1", "--raters", "r1,r2", "--overlap", "2", "--json",
        ]
    )  # fmt: skip
    assert code == 0
    created = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert created["n_items"] == {"generated": 4, "real": 1, "attention_check": 1}
    tokens = {r["name"]: r["token"] for r in created["raters"]}

    store = StudyStore(db)
    demo = build_rating_app(store)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        anonymous = Client(url, verbose=False)
        with pytest.raises(AppError, match="Sign in"):
            anonymous.predict(3, 0, 0, "", False, api_name="/rate")
        with pytest.raises(AppError, match="unknown token"):
            anonymous.predict("wrong-token", api_name="/sign_in")
        with pytest.raises(AppError, match="No verified login"):  # no Gradio auth / OAuth on this app
            anonymous.predict(api_name="/sign_in_from_login")

        all_reports = set(store.items_frame(1)["report"])
        seen: dict[str, list[str]] = {}
        for name in ("r1", "r2"):
            client = Client(url, verbose=False)
            view = client.predict(tokens[name], api_name="/sign_in")
            assert f"Signed in as **{name}**" in view[STATUS] and "Pair 1 of 6" in view[PROGRESS]
            reports = []
            for step in range(6):
                report = view[REPORT]
                reports.append(report)
                view = client.predict(
                    _score_for(report, name), 0, 0, f"{name} {step}", False, api_name="/rate"
                )
                if name == "r1" and step == 2:
                    # Close the browser half-way: a fresh session with the same token resumes at pair 4.
                    client = Client(url, verbose=False)
                    view = client.predict(tokens[name], api_name="/sign_in")
                    assert "Pair 4 of 6" in view[PROGRESS] and "3 rated" in view[PROGRESS]
            assert "6 rated" in view[PROGRESS] and "all pairs rated" in view[PROGRESS]
            with pytest.raises(AppError, match="outside the scale"):
                client.predict(9, 0, 0, "", False, api_name="/rate")
            # Go back one pair, see the own answer, change it.
            back = client.predict(api_name="/previous")
            assert back[REPORT] == reports[-2] and "Your consistency score" in back[CURRENT]
            client.predict(_score_for(reports[-2], name), 4, 5, "changed", False, api_name="/rate")
            seen[name] = reports
            assert "source" not in json.dumps(view[:STATUS] + view[STATUS + 1 :]).lower()
        assert set(seen["r1"]) == set(seen["r2"]) and set(seen["r1"]) <= all_reports  # overlap 2 of 2 raters
        assert seen["r1"] != seen["r2"]  # each rater has an own order

        admin = Client(url, verbose=False)
        admin.predict(tokens["admin"], api_name="/sign_in")
        progress = admin.predict(api_name="/admin_progress")
        assert [row[2] for row in progress["data"]] == [6, 6]  # submitted per rater
        with pytest.raises(AppError, match="admin token"):
            client.predict(api_name="/admin_progress")  # a rater's session
    finally:
        demo.close()
        store.dispose()

    ratings = tmp_path / "ratings.parquet"
    assert main(["export", "--db", str(db), "--study", "e2e", "--out", str(ratings)]) == 0
    frame = pd.read_parquet(ratings)
    consistency = frame[frame["question"] == "consistency"]
    assert len(consistency) == 12 and consistency.groupby(["rater", "item_id"]).size().max() == 1
    changed = frame[(frame["question"] == "comment") & (frame["text"] == "changed")]
    assert len(changed) == 2 and len(frame[frame["question"] == "image_realism"]) == 2

    judge = tmp_path / "judge.json"
    judge.write_text(json.dumps({str(i): float(i % 3) for i in frame["item_id"].unique()}))
    stats_path, plot = tmp_path / "stats.json", tmp_path / "dist.png"
    capsys.readouterr()
    args = ["stats", "--db", str(db), "--study", "e2e", "--judge-scores", str(judge)]
    assert main([*args, "--out", str(stats_path), "--plot", str(plot), "--n-boot", "200"]) == 0
    stats = json.loads(stats_path.read_text())
    agreement = stats["agreement"]
    assert isinstance(agreement["krippendorff_alpha_ordinal"], float)
    assert isinstance(agreement["fleiss_kappa"]["kappa"], float)
    (pair,) = agreement["cohen_kappa_quadratic"]
    assert {pair["rater_a"], pair["rater_b"]} == {"r1", "r2"} and pair["n_items"] == 5
    assert set(stats["per_source"]) == {"medim", "baseline", "real"}
    assert stats["attention_checks"]["n_checks"] == 2
    assert stats["judge"]["n_items"] == 6 and stats["judge"]["spearman"] is not None
    assert plot.stat().st_size > 1000


def test_rating_tab_mounts_inside_an_existing_app(tmp_path):
    store = StudyStore(tmp_path / "tab.db")
    with gr.Blocks() as demo:
        with gr.Tab("Generate"):
            gr.Markdown("the main demo")
        with gr.Tab("Human study"):
            tab = build_rating_tab(store, trust_login=True)
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert {"sign_in", "rate", "previous", "next", "resume", "admin_progress", "admin_export"} <= api_names
    assert tab.session in tab.sign_in_outputs
    store.dispose()
