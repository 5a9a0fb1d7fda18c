"""End to end: create a study from the command line, rate through the running app with two tokens, export, stats."""

from __future__ import annotations

import io
import json
import socket
import zlib
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from eval_human.__main__ import main
from eval_human.store import StudyStore
from eval_human.ui import build_rating_app, build_rating_tab

# Positions of the outputs of /rate, /previous, /next, /resume (see ui.build_rating_tab's view_outputs).
STATUS, PROGRESS, IMAGE, REPORT, REALISM, PLAUSIBILITY, COMMENT, CURRENT, SHOWN = range(9)
SESSION_KEY = -1  # the last output of /sign_in: this sign-in's secret, sent back with every action


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
            anonymous.predict(3, 0, 0, "", False, "", "", api_name="/rate")
        with pytest.raises(AppError, match="unknown token"):
            anonymous.predict("wrong-token", api_name="/sign_in")
        with pytest.raises(AppError, match="No verified login"):  # no Gradio auth / OAuth on this app
            anonymous.predict(api_name="/sign_in_from_login")

        all_reports = set(store.items_frame(1)["report"])
        seen: dict[str, list[str]] = {}
        for name in ("r1", "r2"):
            client = Client(url, verbose=False)
            view = client.predict(tokens[name], api_name="/sign_in")
            key = view[SESSION_KEY]
            assert f"Signed in as **{name}**" in view[STATUS] and "Pair 1 of 6" in view[PROGRESS]
            reports = []
            for step in range(6):
                report = view[REPORT]
                reports.append(report)
                view = client.predict(
                    _score_for(report, name),
                    0,
                    0,
                    f"{name} {step}",
                    False,
                    view[SHOWN],
                    key,
                    api_name="/rate",
                )
                if name == "r1" and step == 2:
                    # Close the browser half-way: a fresh session with the same token resumes at pair 4.
                    client = Client(url, verbose=False)
                    view = client.predict(tokens[name], api_name="/sign_in")
                    key = view[SESSION_KEY]
                    assert "Pair 4 of 6" in view[PROGRESS] and "3 rated" in view[PROGRESS]
            assert "6 rated" in view[PROGRESS] and "all pairs rated" in view[PROGRESS]
            with pytest.raises(AppError, match="outside the scale"):
                client.predict(9, 0, 0, "", False, view[SHOWN], key, api_name="/rate")
            # Go back one pair, see the own answer, change it.
            back = client.predict(key, api_name="/previous")
            assert back[REPORT] == reports[-2] and "Your consistency score" in back[CURRENT]
            client.predict(
                _score_for(reports[-2], name), 4, 5, "changed", False, back[SHOWN], key, api_name="/rate"
            )
            seen[name] = reports
            assert "source" not in json.dumps(view[:STATUS] + view[STATUS + 1 :]).lower()
        assert set(seen["r1"]) == set(seen["r2"]) and set(seen["r1"]) <= all_reports  # overlap 2 of 2 raters
        assert seen["r1"] != seen["r2"]  # each rater has an own order

        admin = Client(url, verbose=False)
        admin_key = admin.predict(tokens["admin"], api_name="/sign_in")[SESSION_KEY]
        progress = admin.predict(admin_key, api_name="/admin_progress")
        assert [row[2] for row in progress["data"]] == [6, 6]  # submitted per rater
        with pytest.raises(AppError, match="admin token"):
            client.predict(key, api_name="/admin_progress")  # a rater's session
        # the export reaches only the admin session, in its reply: no file URL anyone could fetch
        note, csv_text = admin.predict(admin_key, api_name="/admin_export")
        exported = pd.read_csv(io.StringIO(csv_text))
        assert len(exported[exported["question"] == "consistency"]) == 12 and "source" in exported.columns
        assert "/gradio_api/file" not in note and "http" not in csv_text[:200]
        (saved,) = store.export_dir.glob("ratings_study1_*.csv")
        assert saved.read_text().strip() == csv_text.strip() and saved.stat().st_mode & 0o777 == 0o600
        assert store.export_dir.stat().st_mode & 0o777 == 0o700
        for stranger, stranger_key in ((client, key), (anonymous, ""), (anonymous, admin_key)):
            with pytest.raises(AppError, match="admin token|Sign in|sign-in"):
                stranger.predict(stranger_key, api_name="/admin_export")
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


def _ratings_by_item(store: StudyStore, rater: str) -> dict[int, int]:
    frame = store.ratings_frame(1)
    rows = frame[(frame["rater"] == rater) & (frame["question"] == "consistency")]
    return {int(item): int(score) for item, score in zip(rows["item_id"], rows["score"])}


def test_a_score_lands_on_the_pair_on_screen_or_is_refused(built_study):
    """Actions sent back to back from one session, through the running server (the double-click races)."""
    store, built = built_study
    token = next(r.token for r in built.raters if r.name == "r1")
    demo = build_rating_app(store)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        client = Client(url, verbose=False)
        first = client.predict(token, api_name="/sign_in")
        key = first[SESSION_KEY]
        first_item = store.rater_item(built.raters[0].id, 0).item_id
        second_item = store.rater_item(built.raters[0].id, 1).item_id

        # "3" then "4" on pair 1 before the first reply: both name pair 1; nothing may land on pair 2
        jobs = [
            client.submit(score, 0, 0, "", False, first[SHOWN], key, api_name="/rate") for score in (3, 4)
        ]
        replies = [job.result() for job in jobs]
        stored = _ratings_by_item(store, "r1")
        assert set(stored) == {first_item} and stored[first_item] in (3, 4)
        refused = [r for r in replies if "not saved" in r[STATUS]]
        saved = [r for r in replies if r[STATUS] == "Saved."]
        assert len(saved) >= 1 and len(saved) + len(refused) == 2
        for reply in refused:  # the refusal shows the pair the server holds, with its own key
            assert "Pair 2 of" in reply[PROGRESS] and reply[SHOWN] != first[SHOWN]

        # "Next" then "5" with the key of pair 2 that was on screen before Next: 5 must not land on pair 3
        on_two = client.predict(key, api_name="/resume")
        assert "Pair 2 of" in on_two[PROGRESS]
        moved = client.predict(key, api_name="/next")
        late = client.predict(5, 0, 0, "", False, on_two[SHOWN], key, api_name="/rate")
        assert "not saved" in late[STATUS] and late[REPORT] == moved[REPORT]
        assert set(_ratings_by_item(store, "r1")) == {first_item}

        # a key from another session (or made up) is refused too
        other = Client(url, verbose=False)
        other_key = other.predict(token, api_name="/sign_in")[SESSION_KEY]
        assert other_key != key  # every sign-in draws its own secret
        assert (
            "not saved"
            in other.predict(2, 0, 0, "", False, moved[SHOWN], other_key, api_name="/rate")[STATUS]
        )
        assert "not saved" in other.predict(2, 0, 0, "", False, "forged", other_key, api_name="/rate")[STATUS]
        with pytest.raises(AppError, match="whole number"):  # 3.5 is refused, not rounded to 4
            client.predict(3.5, 0, 0, "", False, late[SHOWN], key, api_name="/rate")
        # and the honest path still works: the key of what is shown (the refusal re-showed pair 3) stores there
        ok = client.predict(1, 0, 0, "", False, late[SHOWN], key, api_name="/rate")
        assert ok[STATUS] == "Saved."
        third_item = store.rater_item(built.raters[0].id, 2).item_id
        assert _ratings_by_item(store, "r1") == {first_item: stored[first_item], third_item: 1}
        assert second_item not in _ratings_by_item(store, "r1")
    finally:
        demo.close()


def test_served_media_cannot_tell_real_from_generated(tmp_path):
    """Real scans (128 px, greyscale) and generated images (64 px RGB with a PNG text chunk) reach the rater as
    files of one length and one header."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from eval_human.study import build_study
    from tests.eval_human.conftest import write_dataset_split, write_generated_pairs

    generated = write_generated_pairs(tmp_path / "gen", 6, system="medim", seed=4)
    for path in (generated / "images").glob("*.png"):
        with Image.open(path) as image:
            info = PngInfo()
            info.add_text("generator", "medim")
            image.convert("RGB").resize((64, 64)).save(path, pnginfo=info)
    real = write_dataset_split(tmp_path / "corpus" / "test", 6, seed=5)
    for path in (real / "images").glob("*.png"):
        with Image.open(path) as image:
            image.convert("L").resize((128, 128), Image.Resampling.BICUBIC).save(path, optimize=True)
    store = StudyStore(tmp_path / "blind.db")
    built = build_study(
        store,
        "blind",
        [generated],
        real_sources=[real],
        n_real=4,
        raters=["r1"],
        overlap=1,
        n_attention_checks=1,
    )
    files = sorted(store.media_dir.glob("*.png"))
    assert len(files) >= 10
    sizes = {f.stat().st_size for f in files}
    headers = {f.read_bytes()[:33] for f in files}  # signature + IHDR (size, depth, colour type, ...)
    assert len(sizes) == 1 and len(headers) == 1
    assert all(b"tEXt" not in f.read_bytes() and b"generator" not in f.read_bytes() for f in files)

    demo = build_rating_app(store)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        client = Client(url, verbose=False)
        view = client.predict(built.raters[0].token, api_name="/sign_in")
        key = view[SESSION_KEY]
        served = []
        for _ in range(store.queue_length(built.raters[0].id)):
            served.append(Path(view[IMAGE]).read_bytes())
            view = client.predict(key, api_name="/next")
        assert len({len(data) for data in served}) == 1 and len({data[:33] for data in served}) == 1
        kinds = set(store.items_frame(built.study_id)["kind"])
        assert {"real", "generated"} <= kinds
    finally:
        demo.close()
        store.dispose()


def test_sign_in_is_throttled_after_repeated_failures(built_study):
    """Through the server: after 5 wrong tokens from one address even the right token is refused until the
    window has passed; the limiter forgets failures older than its window."""
    from eval_human.ui import SignInLimiter

    now = [0.0]
    limiter = SignInLimiter(max_failures=5, window_s=60, clock=lambda: now[0])
    store, built = built_study
    right = next(r.token for r in built.raters if r.name == "r1")
    demo = build_rating_app(store, limiter=limiter)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        client = Client(url, verbose=False)
        for _ in range(5):
            with pytest.raises(AppError, match="unknown token"):
                client.predict("guess", api_name="/sign_in")
        with pytest.raises(AppError, match="Too many failed sign-ins"):
            Client(url, verbose=False).predict(right, api_name="/sign_in")  # a new session, same address
        now[0] = 61.0
        view = Client(url, verbose=False).predict(right, api_name="/sign_in")
        assert "Signed in as" in view[STATUS]
    finally:
        demo.close()


def test_a_copied_session_id_without_its_sign_in_key_gets_nothing(built_study, monkeypatch):
    """Through the server: a second client that presents a signed-in rater's (or admin's) Gradio session id —
    which travels in URLs and logs — but not that sign-in's key is refused, sees no pair and moves nothing; a
    new sign-in rotates the key and the old one dies; keys expire."""
    import eval_human.ui as ui

    store, built = built_study
    tokens = {r.name: r.token for r in built.raters}
    demo = build_rating_app(store)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        rater, admin = Client(url, verbose=False), Client(url, verbose=False)
        view = rater.predict(tokens["r1"], api_name="/sign_in")
        key = view[SESSION_KEY]
        admin_key = admin.predict(tokens["admin"], api_name="/sign_in")[SESSION_KEY]
        for victim, someone_elses_key in ((rater, admin_key), (admin, key)):
            thief = Client(url, verbose=False)
            thief.session_hash = victim.session_hash  # the replay: same session id, no key
            for forged in ("", "guess", someone_elses_key):
                for api_name, args in (
                    ("/next", ()),
                    ("/resume", ()),
                    ("/rate", (1, 0, 0, "", False, view[SHOWN])),
                    ("/admin_export", ()),
                ):
                    with pytest.raises(AppError, match="not valid here"):
                        thief.predict(*args, forged, api_name=api_name)
        # the owner was not moved and nothing was stored by the thief
        assert "Pair 2 of" in rater.predict(key, api_name="/next")[PROGRESS]
        assert _ratings_by_item(store, "r1") == {}
        assert "ratings_study" in admin.predict(admin_key, api_name="/admin_export")[0]

        # signing in again rotates the key: the old one no longer works in this session
        renewed = rater.predict(tokens["r1"], api_name="/sign_in")[SESSION_KEY]
        assert renewed != key
        with pytest.raises(AppError, match="not valid here"):
            rater.predict(key, api_name="/resume")
        assert "Pair 1 of" in rater.predict(renewed, api_name="/resume")[PROGRESS]
        monkeypatch.setattr(ui, "SESSION_LIFETIME_S", -1.0)  # every key is now past its lifetime
        with pytest.raises(AppError, match="expired"):
            rater.predict(renewed, api_name="/resume")
    finally:
        demo.close()
