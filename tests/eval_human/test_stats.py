"""Statistics: agreement measures on constructed ratings with known answers, CIs, attention checks, judge, exports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eval_human.stats import (
    attention_check_rates,
    compute_stats,
    export_ratings,
    fleiss,
    judge_agreement,
    krippendorff_ordinal,
    load_judge_scores,
    pairwise_cohen_kappa,
    source_means,
)


def _scores(rows):
    """Consistency-score table from (rater, item_id, source_label, score, kind) tuples."""
    frame = pd.DataFrame(rows, columns=["rater", "item_id", "source_label", "score", "kind"])
    frame["rater_id"] = frame["rater"].rank(method="dense").astype(int)
    frame["external_id"] = "ext" + frame["item_id"].astype(str)
    frame["domain"] = "chest_xray"
    return frame


def _agreeing(n_items=10, noise=None, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n_items):
        truth = 1 + item % 5
        for rater in ("a", "b", "c"):
            score = truth if noise is None else int(rng.integers(1, 6))
            rows.append((rater, item, "medim" if item % 2 else "baseline", score, "generated"))
    return _scores(rows)


def test_perfect_agreement_gives_one_everywhere():
    scores = _agreeing()
    assert krippendorff_ordinal(scores, 5) == pytest.approx(1.0)
    assert fleiss(scores, 5) == {"kappa": pytest.approx(1.0), "n_items": 10, "raters_per_item": 3}
    kappas = pairwise_cohen_kappa(scores, 5)
    assert len(kappas) == 3 and all(k["kappa"] == pytest.approx(1.0) for k in kappas)


def test_random_ratings_give_near_zero_agreement():
    scores = _agreeing(n_items=200, noise=True)
    assert abs(krippendorff_ordinal(scores, 5)) < 0.15
    assert abs(fleiss(scores, 5)["kappa"]) < 0.1
    assert all(abs(k["kappa"]) < 0.2 for k in pairwise_cohen_kappa(scores, 5))


def test_kappa_is_quadratic_weighted():
    # Rater b is always one step above a: near-miss disagreements keep a high weighted kappa.
    rows = [("a", i, "s", 1 + i % 4, "generated") for i in range(20)]
    rows += [("b", i, "s", 2 + i % 4, "generated") for i in range(20)]
    (pair,) = pairwise_cohen_kappa(_scores(rows), 5)
    assert 0.5 < pair["kappa"] < 1.0 and pair["n_items"] == 20


def test_source_means_with_bootstrap_ci():
    scores = _agreeing(n_items=40, noise=True, seed=1)
    result = source_means(scores, n_boot=500, seed=0)
    assert set(result) == {"medim", "baseline"}
    for label, entry in result.items():
        item_means = scores[scores["source_label"] == label].groupby("item_id")["score"].mean()
        assert entry["mean"] == pytest.approx(item_means.mean())
        assert entry["ci_low"] < entry["mean"] < entry["ci_high"]
        assert entry["n_items"] == 20 and entry["n_ratings"] == 60


def test_attention_checks_exclude_from_agreement_and_count_passes():
    rows = [
        ("a", 100, "attention_check", 1, "attention_check"),
        ("b", 100, "attention_check", 4, "attention_check"),
    ]
    ratings = _scores(rows)
    ratings["question"], ratings["cannot_judge"] = "consistency", False
    rates = attention_check_rates(ratings, max_score=2)
    assert rates["per_rater"]["a"]["pass_rate"] == 1.0 and rates["per_rater"]["b"]["pass_rate"] == 0.0
    assert rates["pass_rate"] == 0.5
    both = pd.concat([_agreeing(), _scores(rows)])
    assert fleiss(both, 5)["n_items"] == 10  # the check is not an agreement item


def test_judge_agreement_and_loading(tmp_path):
    scores = _agreeing()
    human = scores.groupby("item_id")["score"].mean()
    judge = {f"ext{i}": float(v) / 5 for i, v in human.items()}  # another scale, same order
    result = judge_agreement(scores, judge)
    assert result["n_items"] == 10 and result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] == pytest.approx(1.0)
    reversed_judge = {k: -v for k, v in judge.items()}
    assert judge_agreement(scores, reversed_judge)["spearman"] == pytest.approx(-1.0)
    (tmp_path / "j.json").write_text(json.dumps(judge))
    (tmp_path / "j.csv").write_text(
        "external_id,judge_score\n" + "".join(f"{k},{v}\n" for k, v in judge.items())
    )
    (tmp_path / "j.jsonl").write_text(
        "".join(json.dumps({"id": k, "score": v}) + "\n" for k, v in judge.items())
    )
    for name in ("j.json", "j.csv", "j.jsonl"):
        assert load_judge_scores(tmp_path / name) == pytest.approx(judge)
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "x", "score": "high"}]))
    with pytest.raises(ValueError, match="'high' is not a number"):
        load_judge_scores(tmp_path / "bad.json")


def test_compute_stats_and_exports_on_a_rated_study(built_study, tmp_path):
    store, built = built_study
    raters = [store.authenticate(r.token) for r in built.raters if r.role == "rater"]
    for rater in raters:
        for position in range(store.queue_length(rater.id)):
            item = store.rater_item(rater.id, position)
            store.submit_rating(rater.id, item.item_id, 1 + item.item_id % 5, image_realism=3)
    stats = compute_stats(store, built.study_id, plot_path=tmp_path / "dist.png", n_boot=200)
    assert set(stats["per_source"]) == {"medim", "baseline"}
    assert stats["agreement"]["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert stats["agreement"]["fleiss_kappa"]["raters_per_item"] == 2
    assert stats["attention_checks"]["n_checks"] == 2 * len(raters)
    assert (tmp_path / "dist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(stats, allow_nan=False)  # strictly JSON: undefined values are None
    csv_path = export_ratings(store, built.study_id, tmp_path / "r.csv")
    parquet_path = export_ratings(store, built.study_id, tmp_path / "r.parquet")
    from_csv, from_parquet = pd.read_csv(csv_path), pd.read_parquet(parquet_path)
    assert len(from_csv) == len(from_parquet) == 2 * sum(store.queue_length(r.id) for r in raters)
    assert {"rater", "source_label", "question", "score", "seconds_spent"} <= set(from_parquet.columns)
    with pytest.raises(ValueError, match="must end in .csv or .parquet"):
        export_ratings(store, built.study_id, tmp_path / "r.xlsx")
