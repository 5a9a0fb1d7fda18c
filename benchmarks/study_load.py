"""The human study under load, through the running server: many raters at once, double-clicks mixed in.

Each rater is its own ``gradio_client`` session against ``eval_human.ui.build_rating_app``. For every pair it
either rates once, double-clicks (two scores sent back to back with the key of the same pair, the second before
the first reply), or presses "Next" and a score at once (the score carries the key of the pair that was on screen
before "Next"). It then asks the server for its first unrated pair and goes on until its queue is done.

What the client knows is the ground truth: which pair each score was sent for (the pair whose key it carried) and
which replies said "Saved.". Afterwards the database is compared with it:

- **stored**: answers in the database; **lost**: a pair with an acknowledged score but no stored answer;
- **misplaced**: a stored answer whose score was never acknowledged for that pair (it landed on a pair the rater
  did not see, or a refused score was kept);
- **refused**: replies that said "not saved" (a raced second press, or a score sent after "Next").

    python -m benchmarks.study_load --raters 32 --items 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import text

from benchmarks.common import machine_description, markdown_table, write_result

STATUS, PROGRESS, SHOWN = 0, 1, 8  # positions in the outputs of /rate, /next, /resume (ui.view_outputs)
SESSION_KEY = -1  # the last output of /sign_in
PAIR = re.compile(r"Pair (\d+) of (\d+)\*\* · (\d+) rated")


@dataclass
class RaterLog:
    """What one rater's client sent and was told."""

    name: str
    rater_id: int
    sent: int = 0
    saved: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    acknowledged: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # item id → scores
    actions: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_load_study(path: Path, n_raters: int, n_items: int):
    """A study where every rater gets every item (overlap = raters): all write into the same rows' neighbourhood."""
    from eval_human.store import StudyStore

    store = StudyStore(path)
    study_id = store.create_study("load", overlap=n_raters)
    raters = store.add_raters(study_id, [f"rater{i:02d}" for i in range(n_raters)])
    for index in range(n_items):
        store.add_item(
            study_id,
            image=Image.new("L", (8, 8), index * 10),
            report=f"report {index}",
            kind="generated",
            source={"system": "medim"},
        )
    store.assign_all(study_id)
    return store, raters


def rate_through_server(
    url: str, store, rater, seed: int, *, double_click: float, next_then_rate: float
) -> RaterLog:
    """One rater's client: rate the whole queue, mixing in double-clicks and "Next"-then-score races."""
    from gradio_client import Client

    rng = random.Random(seed)
    log = RaterLog(rater.name, rater.id)
    client = Client(url, verbose=False)
    view = client.predict(rater.token, api_name="/sign_in")
    key = view[SESSION_KEY]
    n_items = store.queue_length(rater.id)
    item_at = [store.rater_item(rater.id, position).item_id for position in range(n_items)]

    def rate_job(score: int, shown: str):
        return client.submit(score, 0, 0, "", False, shown, key, api_name="/rate")

    for _ in range(4 * n_items):  # every round answers at least one pair; the bound only guards a bug
        position, _, done = (int(g) for g in PAIR.search(view[PROGRESS]).groups())
        if done == n_items:
            break
        on_screen, shown = item_at[position - 1], view[SHOWN]
        draw = rng.random()
        if draw < double_click:
            kind = "double click"
            scores = [rng.randint(1, 5), rng.randint(1, 5)]
            jobs = [rate_job(score, shown) for score in scores]
        elif draw < double_click + next_then_rate:
            kind = "next, then a score"
            scores = [rng.randint(1, 5)]
            jobs = [client.submit(key, api_name="/next"), rate_job(scores[0], shown)]
            jobs = jobs[1:] + [jobs[0]]  # the rate reply first; the /next reply only needs collecting
        else:
            kind = "single"
            scores = [rng.randint(1, 5)]
            jobs = [rate_job(scores[0], shown)]
        log.actions[kind] += 1
        for index, job in enumerate(jobs):
            try:
                reply = job.result()
            except Exception as error:  # noqa: BLE001 - counted and reported, never hidden
                log.errors.append(f"{type(error).__name__}: {error}")
                continue
            if index >= len(scores):  # the /next reply
                continue
            log.sent += 1
            if reply[STATUS] == "Saved.":
                log.saved += 1
                log.acknowledged[on_screen].add(scores[index])
            elif "not saved" in reply[STATUS]:
                log.refused += 1
            else:
                log.errors.append(f"unexpected status {reply[STATUS]!r}")
        view = client.predict(key, api_name="/resume")  # the first unrated pair, with a fresh key
    return log


def compare_with_database(store, logs: list[RaterLog]) -> dict[str, int]:
    """Stored, lost and misplaced answers against what each client was told."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT rater_id, item_id, score FROM ratings WHERE question = 'consistency'")
        ).all()
    stored = {(rater_id, item_id): score for rater_id, item_id, score in rows}
    acknowledged = {
        (log.rater_id, item_id): scores for log in logs for item_id, scores in log.acknowledged.items()
    }
    lost = sum(1 for pair in acknowledged if pair not in stored)
    misplaced = sum(1 for pair, score in stored.items() if score not in acknowledged.get(pair, set()))
    return {
        "stored": len(stored),
        "pairs acknowledged": len(acknowledged),
        "lost": lost,
        "misplaced": misplaced,
        "duplicate rows": len(rows) - len(stored),
    }


def run_load(
    root: Path,
    n_raters: int,
    n_items: int,
    *,
    seed: int = 0,
    double_click: float = 0.3,
    next_then_rate: float = 0.2,
) -> dict:
    """Serve a fresh study, let ``n_raters`` clients rate it at once, and compare the database with the clients."""
    from eval_human.ui import build_rating_app

    store, raters = build_load_study(root / "load.db", n_raters, n_items)
    demo = build_rating_app(store)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    logs: list[RaterLog | None] = [None] * len(raters)
    barrier = threading.Barrier(len(raters))

    def worker(index: int) -> None:
        barrier.wait()
        logs[index] = rate_through_server(
            url,
            store,
            raters[index],
            seed * 1000 + index,
            double_click=double_click,
            next_then_rate=next_then_rate,
        )

    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(raters))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        demo.close()
    seconds = time.perf_counter() - start
    done = [log for log in logs if log is not None]
    figures = {
        "raters": n_raters,
        "pairs per rater": n_items,
        "scores sent": sum(log.sent for log in done),
        "acknowledged (Saved.)": sum(log.saved for log in done),
        "refused (not saved)": sum(log.refused for log in done),
        **compare_with_database(store, done),
        "client errors": sum(len(log.errors) for log in done),
        "raters finished": len(done),
        "seconds": round(seconds, 1),
        "integrity_check": store.integrity_check(),
    }
    actions: dict[str, int] = defaultdict(int)
    for log in done:
        for kind, count in log.actions.items():
            actions[kind] += count
    figures["actions"] = dict(actions)
    figures["first errors"] = [error for log in done for error in log.errors][:3]
    figures["load before/after"] = (
        "/".join(f"{v:.2f}" for v in load_before) + " / " + "/".join(f"{v:.2f}" for v in os.getloadavg())
    )
    store.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=32)
    parser.add_argument("--items", type=int, default=8, help="pairs in every rater's queue")
    parser.add_argument(
        "--double-click", type=float, default=0.3, help="share of pairs answered with two presses"
    )
    parser.add_argument("--next-then-rate", type=float, default=0.2, help="share of pairs raced with 'Next'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = machine_description()
    with tempfile.TemporaryDirectory() as tmp:
        figures = run_load(
            Path(tmp),
            args.raters,
            args.items,
            seed=args.seed,
            double_click=args.double_click,
            next_then_rate=args.next_then_rate,
        )
    print(json.dumps(figures, indent=1))
    keys = [
        "raters", "pairs per rater", "scores sent", "acknowledged (Saved.)", "refused (not saved)", "stored",
        "lost", "misplaced", "duplicate rows", "client errors", "seconds", "load before/after",
    ]  # fmt: skip
    table = markdown_table(keys, [[figures[k] for k in keys]])
    actions = ", ".join(f"{kind}: {count}" for kind, count in sorted(figures["actions"].items()))
    write_result(
        "study_load",
        "Human study under load: concurrent raters with double-clicks, through the server",
        [
            "Every rater is a `gradio_client` session on `eval_human.ui.build_rating_app` over a fresh SQLite "
            "study (every rater gets every pair). Per pair a rater rates once, double-clicks (two scores with the "
            "same pair key, the second sent before the first reply) or presses Next and a score at once; then it "
            "asks for its first unrated pair. *Lost*: a pair with an acknowledged score but nothing stored; "
            "*misplaced*: a stored score that was never acknowledged for that pair.",
            table,
            f"Actions: {actions}. SQLite `integrity_check`: {figures['integrity_check']}.",
        ],
        machine,
        args.out,
    )
    failed = figures["lost"] or figures["misplaced"] or figures["duplicate rows"] or figures["client errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
