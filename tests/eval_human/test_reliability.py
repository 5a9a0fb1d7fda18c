"""Reliability on a real temporary SQLite file: concurrent raters, a writer killed mid-transaction.

The concurrency figures (raters, rating submissions, seconds, lost) are printed (``pytest -s``) and attached to
the test report as user properties.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from benchmarks.study_load import build_load_study
from eval_human.store import StudyStore

REPO_ROOT = Path(__file__).resolve().parents[2]
N_ITEMS = 6


def _rate_like_a_rater(store: StudyStore, token: str, seed: int) -> dict:
    """Rate every item, then change about half of them; returns the last write per (item, question)."""
    rng = random.Random(seed)
    rater = store.authenticate(token)
    item_ids = [store.rater_item(rater.id, p).item_id for p in range(store.queue_length(rater.id))]
    last: dict = {}
    calls = 0
    for round_ in range(2):
        for item_id in item_ids:
            if round_ == 1 and rng.random() < 0.5:
                continue
            score = rng.randint(1, 5)
            realism = rng.choice([None, rng.randint(1, 5)])
            store.submit_rating(rater.id, item_id, score, image_realism=realism, seconds_spent=1.0)
            calls += 1
            last[(item_id, "consistency")] = score
            last.pop((item_id, "image_realism"), None)
            if realism is not None:
                last[(item_id, "image_realism")] = realism
    return {"rater_id": rater.id, "last": last, "calls": calls}


def _check_final_state(store: StudyStore, expected: dict[int, dict]) -> dict:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT rater_id, item_id, question, score FROM ratings")).all()
        duplicates = conn.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT 1 FROM ratings GROUP BY rater_id, item_id, question "
                "HAVING COUNT(*) > 1)"
            )
        ).scalar()
    stored = {(r, i, q): s for r, i, q, s in rows}
    wanted = {(rater, i, q): s for rater, last in expected.items() for (i, q), s in last.items()}
    lost = sum(1 for key in wanted if key not in stored)
    wrong = sum(1 for key, score in wanted.items() if stored.get(key, score) != score)
    extra = len(set(stored) - set(wanted))
    return {"rows": len(rows), "lost": lost, "wrong": wrong, "extra": extra, "duplicates": duplicates}


def _threads_rate_at_once(tmp_path, record_property, n_raters: int, n_items: int) -> None:
    store, raters = build_load_study(tmp_path / "threads.db", n_raters, n_items)
    barrier = threading.Barrier(n_raters)
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            outcome = _rate_like_a_rater(store, raters[index].token, seed=index)
            results[outcome["rater_id"]] = outcome
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_raters)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    assert not errors, errors[:3]
    check = _check_final_state(store, {r: v["last"] for r, v in results.items()})
    figures = {
        "raters": n_raters,
        "rating_submissions": sum(v["calls"] for v in results.values()),
        "stored_answers": check["rows"],
        "seconds": round(seconds, 2),
        "lost": check["lost"],
    }
    print("\nconcurrency (threads):", json.dumps(figures))
    record_property("concurrency_threads", json.dumps(figures))
    assert check == {**check, "lost": 0, "wrong": 0, "extra": 0, "duplicates": 0}
    assert len(results) == n_raters and figures["rating_submissions"] >= n_raters * n_items
    assert store.integrity_check() == "ok"
    store.dispose()


def test_32_threads_rate_and_change_at_once(tmp_path, record_property):
    _threads_rate_at_once(tmp_path, record_property, n_raters=32, n_items=4)


@pytest.mark.slow
def test_32_threads_rate_and_change_at_once_long(tmp_path, record_property):
    _threads_rate_at_once(tmp_path, record_property, n_raters=32, n_items=25)


WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    from test_reliability import _rate_like_a_rater
    from eval_human.store import StudyStore
    store = StudyStore(sys.argv[3], upgrade=False)
    outcomes = [_rate_like_a_rater(store, token, seed) for token, seed in json.loads(sys.argv[4])]
    print(json.dumps([{"rater_id": o["rater_id"], "calls": o["calls"],
                       "last": [[i, q, s] for (i, q), s in o["last"].items()]} for o in outcomes]))
    """
)


def test_processes_rate_at_once(tmp_path, record_property):
    n_processes, per_process = 2, 2
    store, raters = build_load_study(tmp_path / "procs.db", n_processes * per_process, n_items=4)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start = time.perf_counter()
    procs = []
    for p in range(n_processes):
        batch = [(raters[p * per_process + k].token, 100 + p * per_process + k) for k in range(per_process)]
        args = [
            sys.executable,
            str(script),
            str(REPO_ROOT),
            str(Path(__file__).parent),
            store.url.split("///", 1)[1],
        ]
        procs.append(subprocess.Popen([*args, json.dumps(batch)], stdout=subprocess.PIPE, text=True))
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    seconds = time.perf_counter() - start
    assert all(proc.returncode == 0 for proc in procs)
    expected, calls = {}, 0
    for output in outputs:
        for outcome in json.loads(output.strip().splitlines()[-1]):
            expected[outcome["rater_id"]] = {(i, q): s for i, q, s in outcome["last"]}
            calls += outcome["calls"]
    check = _check_final_state(store, expected)
    figures = {
        "processes": n_processes,
        "raters": len(expected),
        "rating_submissions": calls,
        "seconds": round(seconds, 2),
        "lost": check["lost"],
    }
    print("\nconcurrency (processes):", json.dumps(figures))
    record_property("concurrency_processes", json.dumps(figures))
    assert check == {**check, "lost": 0, "wrong": 0, "extra": 0, "duplicates": 0}
    assert store.integrity_check() == "ok"
    store.dispose()


CRASHER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from eval_human.store import StudyStore
    store = StudyStore(sys.argv[2], upgrade=False)
    rater = store.authenticate(sys.argv[3])
    items = [store.rater_item(rater.id, p).item_id for p in range(store.queue_length(rater.id))]
    half = len(items) // 2
    for n, item_id in enumerate(items[:half]):
        store.submit_rating(rater.id, item_id, 1 + n % 5, comment=f"committed {n}")
        print("committed", item_id, 1 + n % 5, flush=True)
    if sys.argv[4] == "hold":
        # Open a write transaction, change committed answers and add new ones, then hang inside it.
        from eval_human.store.ratings import _upsert_rating
        from eval_human.models import utcnow
        with store._write() as session:
            for item_id in items:
                _upsert_rating(session, {"rater_id": rater.id, "item_id": item_id, "question": "consistency",
                                         "score": 5, "text": None, "cannot_judge": False, "seconds_spent": None,
                                         "created_at": utcnow(), "updated_at": utcnow()})
            session.flush()
            print("in-transaction", flush=True)
            time.sleep(60)
    else:
        n = 0
        while True:  # keep writing until killed at an arbitrary point
            item_id = items[half + n % (len(items) - half)]
            store.submit_rating(rater.id, item_id, 2, comment="x" * (n % 50))
            n += 1
    """
)


@pytest.mark.parametrize("mode", ["hold", "busy"])
def test_writer_killed_mid_transaction_leaves_consistent_db(tmp_path, mode):
    store, raters = build_load_study(tmp_path / "crash.db", 1, N_ITEMS)
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    database = store.url.split("///", 1)[1]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(REPO_ROOT), database, raters[0].token, mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    committed = {}
    try:
        for line in proc.stdout:
            if line.startswith("committed"):
                _, item_id, score = line.split()
                committed[int(item_id)] = int(score)
            if (mode == "hold" and line.startswith("in-transaction")) or (
                mode == "busy" and len(committed) == N_ITEMS // 2
            ):
                if mode == "busy":
                    time.sleep(0.2)  # let it write for a while, then kill at an arbitrary point
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(committed) == N_ITEMS // 2

    store.dispose()
    reopened = StudyStore(database)
    assert reopened.integrity_check() == "ok"
    with reopened.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        scores = dict(
            conn.execute(text("SELECT item_id, score FROM ratings WHERE question = 'consistency'")).all()
        )
    for item_id, score in committed.items():
        assert scores[item_id] == score  # committed ratings survive, unchanged by the killed transaction
    if mode == "hold":
        assert set(scores) == set(committed)  # nothing of the open transaction is visible
    reopened.submit_rating(1, next(iter(committed)), 3)  # the database is writable again
    reopened.dispose()
