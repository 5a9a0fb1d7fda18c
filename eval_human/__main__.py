"""Command line of the human study: ``python -m eval_human create-study|add-raters|add-pairs|serve|export|stats|upgrade``.

The database is ``--db`` (a SQLite path or any SQLAlchemy URL; default ``$EVAL_HUMAN_DB`` or ``eval_human.db``),
images live in ``--media`` (default ``<sqlite file>.media``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

DEFAULT_DB = os.environ.get("EVAL_HUMAN_DB", "eval_human.db")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _domain_ratio(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    ratio = {}
    for part in text.split(","):
        domain, _, weight = part.partition("=")
        try:
            ratio[domain.strip()] = float(weight)
        except ValueError as error:
            raise SystemExit(f"--domain-ratio part {part!r} must look like chest_xray=1") from error
    return ratio


def _print_tokens(raters, as_json: bool) -> None:
    if as_json:
        return
    print("\nRater tokens (shown once, stored only hashed — hand each to its rater now):")
    for rater in raters:
        print(f"  {rater.name:<20} {rater.role:<6} {rater.token}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval_human", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--db", default=DEFAULT_DB, help="SQLite path or SQLAlchemy URL (default: %(default)s)"
        )
        p.add_argument("--media", default=None, help="image folder (default: <sqlite file>.media)")
        return p

    create = with_db(sub.add_parser("create-study", help="build a blinded study from pair sources"))
    create.add_argument("--name", required=True)
    create.add_argument("--description", default="")
    create.add_argument(
        "--source",
        action="append",
        required=True,
        help="pairs folder (pairs.jsonl), dataset split/root (metadata.jsonl) or manifest; repeat to mix",
    )
    create.add_argument("--ratio", default=None, help="mixing weights of the sources, e.g. 1:1")
    create.add_argument(
        "--n-items", type=int, default=None, help="items drawn from the sources (default: all)"
    )
    create.add_argument(
        "--domain-ratio", default=None, help="e.g. chest_xray=1,pathology=1 (within each source)"
    )
    create.add_argument("--real", action="append", default=[], help="extra source of real pairs")
    create.add_argument("--n-real", type=int, default=0, help="real pairs added from --real")
    create.add_argument(
        "--attention-checks", type=int, default=0, help="mismatched pairs shown to every rater"
    )
    create.add_argument("--raters", required=True, help="comma-separated rater names")
    create.add_argument("--admins", default="admin", help="comma-separated admin names ('' for none)")
    create.add_argument("--overlap", type=int, default=2, help="raters per item")
    create.add_argument("--likert-max", type=int, default=5)
    create.add_argument("--seed", type=int, default=0)
    create.add_argument(
        "--json", action="store_true", help="print the result (with tokens) as one JSON object"
    )

    raters = with_db(sub.add_parser("add-raters", help="add raters (or admins) to a study"))
    raters.add_argument("--study", required=True)
    raters.add_argument("--names", required=True)
    raters.add_argument("--admin", action="store_true")
    raters.add_argument("--json", action="store_true")

    pairs = with_db(sub.add_parser("add-pairs", help="add a folder of (generated) pairs to a running study"))
    pairs.add_argument("--study", required=True)
    pairs.add_argument("--source", required=True)
    pairs.add_argument("--limit", type=int, default=None)

    serve = with_db(sub.add_parser("serve", help="run the rating app"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--auth", action="store_true", help="Gradio login: user = rater name, password = rater token"
    )

    export = with_db(sub.add_parser("export", help="ratings to CSV or Parquet (unblinded)"))
    export.add_argument("--study", required=True)
    export.add_argument("--out", required=True, help="file ending in .csv or .parquet")
    export.add_argument("--items-out", default=None, help="also write the items table (.csv or .parquet)")

    stats = with_db(sub.add_parser("stats", help="agreement statistics (JSON) and a score-distribution plot"))
    stats.add_argument("--study", required=True)
    stats.add_argument(
        "--judge-scores", default=None, help="automatic judge scores per item (JSON/JSONL/CSV)"
    )
    stats.add_argument("--out", default=None, help="write the statistics JSON here too")
    stats.add_argument("--plot", default=None, help="PNG of score distributions per source")
    stats.add_argument("--n-boot", type=int, default=2000)
    stats.add_argument("--seed", type=int, default=0)

    with_db(sub.add_parser("upgrade", help="migrate the database schema to the newest revision"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (2 for bad input, with the reason on stderr)."""
    args = _parser().parse_args(argv)
    from eval_human.store import StudyError, StudyStore

    try:
        # only create-study may make a database: a mistyped --db elsewhere must not serve an empty new one
        store = StudyStore(args.db, args.media, create=args.command == "create-study")
        try:
            return _run(args, store)
        finally:
            store.dispose()
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, store) -> int:  # noqa: ANN001 - StudyStore, imported lazily
    if args.command == "create-study":
        from eval_human.study import build_study

        built = build_study(
            store,
            args.name,
            args.source,
            raters=_names(args.raters),
            admins=_names(args.admins),
            ratio=args.ratio,
            n_items=args.n_items,
            domain_ratio=_domain_ratio(args.domain_ratio),
            real_sources=args.real,
            n_real=args.n_real,
            n_attention_checks=args.attention_checks,
            overlap=args.overlap,
            likert_max=args.likert_max,
            seed=args.seed,
            description=args.description,
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "study_id": built.study_id,
                        "n_items": built.n_items,
                        "raters": [{"name": r.name, "role": r.role, "token": r.token} for r in built.raters],
                    }
                )
            )
        else:
            print(f"study {args.name!r} (id {built.study_id}) created in {store.url}: items {built.n_items}")
        _print_tokens(built.raters, args.json)
    elif args.command == "add-raters":
        study_id = store.study_id_by_name(args.study)
        new = store.add_raters(study_id, _names(args.names), role="admin" if args.admin else "rater")
        if not args.admin:
            counts = store.assign_new_raters(study_id, [r.id for r in new])
            print(f"assigned {sum(counts.values())} items to {len(new)} new rater(s)", file=sys.stderr)
        if args.json:
            print(json.dumps([{"name": r.name, "role": r.role, "token": r.token} for r in new]))
        _print_tokens(new, args.json)
    elif args.command == "add-pairs":
        from eval_human.study import add_pairs_from_folder

        ids = add_pairs_from_folder(store, store.study_id_by_name(args.study), args.source, limit=args.limit)
        print(f"added {len(ids)} items to study {args.study!r}")
    elif args.command == "serve":
        from eval_human.ui import build_rating_app

        demo = build_rating_app(store, trust_login=args.auth)
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            auth=store.check_login if args.auth else None,
            footer_links=["api"],
        )
    elif args.command == "export":
        from eval_human.stats import export_ratings

        study_id = store.study_id_by_name(args.study)
        path = export_ratings(store, study_id, args.out)
        print(f"wrote {path}")
        if args.items_out:
            items = store.items_frame(study_id)
            items["source"] = items["source"].map(lambda s: json.dumps(s, sort_keys=True))
            if args.items_out.endswith(".parquet"):
                items.to_parquet(args.items_out, index=False)
            else:
                items.to_csv(args.items_out, index=False)
            print(f"wrote {args.items_out}")
    elif args.command == "stats":
        from eval_human.stats import compute_stats, load_judge_scores

        judge = load_judge_scores(args.judge_scores) if args.judge_scores else None
        result = compute_stats(
            store,
            store.study_id_by_name(args.study),
            judge_scores=judge,
            plot_path=args.plot,
            n_boot=args.n_boot,
            seed=args.seed,
        )
        text = json.dumps(result, indent=2)
        print(text)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
    elif args.command == "upgrade":
        print(f"schema of {store.url} is at the newest revision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
