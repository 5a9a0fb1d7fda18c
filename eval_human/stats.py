"""Agreement statistics of a study: per-source means with bootstrap CIs, inter-rater agreement, attention checks,
agreement of an automatic judge with the human mean, and a plot of score distributions.

Inputs are the store's long ratings frame (``StudyStore.ratings_frame``); ``cannot judge`` answers are left out of
every score statistic and counted separately.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval_human.models import KIND_ATTENTION_CHECK, Q_CONSISTENCY
from eval_human.store import StudyError, StudyStore


def consistency_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """Scored consistency answers: one row per (rater, item) with ``score`` as int, cannot-judge rows dropped."""
    table = ratings[
        (ratings["question"] == Q_CONSISTENCY) & ratings["score"].notna() & ~ratings["cannot_judge"]
    ]
    table = table[
        ["rater", "rater_id", "item_id", "external_id", "kind", "source_label", "domain", "score"]
    ].copy()
    table["score"] = table["score"].astype(int)
    return table.reset_index(drop=True)


def source_means(
    scores: pd.DataFrame, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per source label: mean consistency over items (each item = mean of its raters) with a bootstrap CI.

    Items, not ratings, are resampled (percentile bootstrap, ``scipy.stats.bootstrap``) because ratings of one item
    are not independent. Attention checks are excluded.
    """
    from scipy.stats import bootstrap

    regular = scores[scores["kind"] != KIND_ATTENTION_CHECK]
    result = {}
    for label, group in regular.groupby("source_label", sort=True):
        item_means = group.groupby("item_id")["score"].mean().to_numpy(dtype=float)
        low = high = math.nan
        if len(item_means) >= 2 and np.ptp(item_means) > 0:
            ci = bootstrap(
                (item_means,),
                np.mean,
                n_resamples=n_boot,
                confidence_level=confidence,
                method="percentile",
                rng=np.random.default_rng(seed),
            ).confidence_interval
            low, high = float(ci.low), float(ci.high)
        elif len(item_means) >= 2:  # every item scored alike: the bootstrap distribution is a single point
            low = high = float(item_means[0])
        result[str(label)] = {
            "n_items": int(len(item_means)),
            "n_ratings": int(len(group)),
            "mean": float(item_means.mean()) if len(item_means) else math.nan,
            "ci_low": low,
            "ci_high": high,
            "confidence": confidence,
        }
    return result


def reliability_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """Raters × items matrix of scores (NaN where a rater did not score an item), attention checks excluded."""
    regular = scores[scores["kind"] != KIND_ATTENTION_CHECK]
    return regular.pivot_table(index="rater", columns="item_id", values="score", aggfunc="first")


def krippendorff_ordinal(scores: pd.DataFrame, likert_max: int) -> float:
    """Krippendorff's alpha, ordinal level, over the (sparse) raters × items matrix; NaN if it is undefined."""
    import krippendorff

    matrix = reliability_matrix(scores)
    pairable = (matrix.notna().sum(axis=0) >= 2).sum()
    if matrix.shape[0] < 2 or pairable < 1:
        return math.nan
    values = matrix.to_numpy(dtype=float)
    if np.unique(values[~np.isnan(values)]).size < 2:
        return math.nan  # one value only: alpha is 0/0
    return float(
        krippendorff.alpha(
            reliability_data=values,
            level_of_measurement="ordinal",
            value_domain=list(range(1, likert_max + 1)),
        )
    )


def pairwise_cohen_kappa(
    scores: pd.DataFrame, likert_max: int, *, min_items: int = 2
) -> list[dict[str, Any]]:
    """Quadratic-weighted Cohen's kappa for every rater pair with at least ``min_items`` co-rated items."""
    from sklearn.metrics import cohen_kappa_score

    matrix = reliability_matrix(scores)
    labels = list(range(1, likert_max + 1))
    pairs = []
    for a, b in itertools.combinations(matrix.index, 2):
        both = matrix.loc[[a, b]].dropna(axis=1)
        if both.shape[1] < min_items:
            continue
        x, y = both.loc[a].astype(int).to_numpy(), both.loc[b].astype(int).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = cohen_kappa_score(x, y, labels=labels, weights="quadratic")
        pairs.append(
            {"rater_a": str(a), "rater_b": str(b), "n_items": int(both.shape[1]), "kappa": float(kappa)}
        )
    return pairs


def fleiss(scores: pd.DataFrame, likert_max: int) -> dict[str, Any]:
    """Fleiss' kappa over the items rated by the most common number (≥ 2) of raters, as the method requires."""
    from statsmodels.stats.inter_rater import fleiss_kappa

    matrix = reliability_matrix(scores)
    counts = matrix.notna().sum(axis=0)
    counts = counts[counts >= 2]
    if counts.empty:
        return {"kappa": math.nan, "n_items": 0, "raters_per_item": 0}
    per_item = int(counts.mode().max())
    items = counts[counts == per_item].index
    table = np.zeros((len(items), likert_max), dtype=int)
    for row, item in enumerate(items):
        for value in matrix[item].dropna().astype(int):
            table[row, value - 1] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = fleiss_kappa(table, method="fleiss")
    return {"kappa": float(kappa), "n_items": int(len(items)), "raters_per_item": per_item}


def attention_check_rates(ratings: pd.DataFrame, max_score: int) -> dict[str, Any]:
    """Share of attention checks (mismatched pairs) each rater caught: consistency ≤ ``max_score``.

    A "cannot judge" answer on a check counts as answered but not caught.
    """
    checks = ratings[(ratings["question"] == Q_CONSISTENCY) & (ratings["kind"] == KIND_ATTENTION_CHECK)]
    per_rater = {}
    for rater, group in checks.groupby("rater", sort=True):
        passed = int(((group["score"] <= max_score) & ~group["cannot_judge"]).fillna(False).sum())
        per_rater[str(rater)] = {
            "n_checks": int(len(group)),
            "passed": passed,
            "pass_rate": passed / len(group),
        }
    total = sum(v["n_checks"] for v in per_rater.values())
    passed = sum(v["passed"] for v in per_rater.values())
    return {
        "max_score": max_score,
        "n_checks": total,
        "pass_rate": passed / total if total else math.nan,
        "per_rater": per_rater,
    }


def load_judge_scores(path: str | Path) -> dict[str, float]:
    """Automatic judge scores per item from JSON (``{id: score}`` or a list of records), JSONL or CSV.

    Records name the item by ``item_id`` or ``external_id``/``id`` and the score by ``score`` or ``judge_score``.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"judge scores file {str(path)!r} does not exist")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            records: list[Any] = list(csv.DictReader(handle))
    elif path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = [{"id": k, "score": v} for k, v in data.items()] if isinstance(data, dict) else data
    scores = {}
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise StudyError(f"{path} entry {index} must be an object, got {record!r:.80}")
        key = next(
            (record[k] for k in ("item_id", "external_id", "id") if record.get(k) not in (None, "")), None
        )
        value = next((record[k] for k in ("score", "judge_score") if record.get(k) not in (None, "")), None)
        if key is None or value is None:
            raise StudyError(f"{path} entry {index} needs an item id and a score, got {dict(record)!r:.120}")
        try:
            scores[str(key)] = float(value)
        except (TypeError, ValueError) as error:
            raise StudyError(f"{path} entry {index}: score {value!r} is not a number") from error
    return scores


def judge_agreement(scores: pd.DataFrame, judge: Mapping[str, float]) -> dict[str, Any]:
    """Rank and linear correlation between judge scores and the per-item human mean (items matched by id).

    Judge keys may be the study's ``item_id`` or the pair's ``external_id``; attention checks are included
    (a judge should also score mismatched pairs low).
    """
    from scipy.stats import kendalltau, pearsonr, spearmanr

    per_item = scores.groupby(["item_id", "external_id"])["score"].mean().reset_index()
    matched = []
    for row in per_item.itertuples(index=False):
        key = str(row.item_id) if str(row.item_id) in judge else str(row.external_id)
        if key in judge:
            matched.append((judge[key], row.score))
    result: dict[str, Any] = {"n_items": len(matched), "n_judge_scores": len(judge)}
    if len(matched) < 3:
        result.update(spearman=math.nan, pearson=math.nan, kendall=math.nan)
        return result
    judge_values, human_values = (np.array(v, dtype=float) for v in zip(*matched))
    if np.ptp(judge_values) == 0 or np.ptp(human_values) == 0:
        result.update(spearman=math.nan, pearson=math.nan, kendall=math.nan)
        return result
    result.update(
        spearman=float(spearmanr(judge_values, human_values).statistic),
        pearson=float(pearsonr(judge_values, human_values).statistic),
        kendall=float(kendalltau(judge_values, human_values).statistic),
    )
    return result


def plot_distributions(scores: pd.DataFrame, path: str | Path, likert_max: int) -> Path:
    """Grouped bar chart of the share of each consistency score per source label; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    labels = sorted(scores["source_label"].unique())
    values = np.arange(1, likert_max + 1)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for index, label in enumerate(labels):
        group = scores[scores["source_label"] == label]["score"]
        share = np.array([(group == v).mean() for v in values])
        ax.bar(
            values + (index - (len(labels) - 1) / 2) * width, share, width, label=f"{label} (n={len(group)})"
        )
    ax.set_xticks(values)
    ax.set_xlabel("image–report consistency (Likert)")
    ax.set_ylabel("share of ratings")
    ax.set_title("Consistency scores per source")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def compute_stats(
    store: StudyStore,
    study_id: int,
    *,
    judge_scores: Mapping[str, float] | None = None,
    plot_path: str | Path | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """All study statistics as a JSON-ready dict (undefined values are ``None``)."""
    info = store.study_info(study_id)
    likert_max = info["likert_max"]
    ratings = store.ratings_frame(study_id)
    scores = consistency_scores(ratings)
    consistency_rows = ratings[ratings["question"] == Q_CONSISTENCY]
    stats: dict[str, Any] = {
        "study": info["name"],
        "likert_max": likert_max,
        "n_items": info["n_items"],
        "n_raters": info["n_raters"],
        "n_ratings": int(len(consistency_rows)),
        "n_cannot_judge": int(consistency_rows["cannot_judge"].sum()),
        "per_source": source_means(scores, n_boot=n_boot, seed=seed),
        "agreement": {
            "krippendorff_alpha_ordinal": krippendorff_ordinal(scores, likert_max),
            "fleiss_kappa": fleiss(scores, likert_max),
            "cohen_kappa_quadratic": pairwise_cohen_kappa(scores, likert_max),
        },
        "attention_checks": attention_check_rates(ratings, info["attention_max_score"]),
    }
    if judge_scores is not None:
        stats["judge"] = judge_agreement(scores, judge_scores)
    if plot_path is not None and not scores.empty:
        stats["plot"] = str(plot_distributions(scores, plot_path, likert_max))
    return _finite_or_none(stats)


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), +cmd, @SUM, ...)
SPREADSHEET_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """Text a spreadsheet shows as text: a leading formula character gets a "'" prefix (OWASP CSV injection).
    Other values pass unchanged; Parquet exports keep the exact text."""
    if isinstance(value, str) and value.startswith(SPREADSHEET_FORMULA_STARTS):
        return "'" + value
    return value


def export_ratings(store: StudyStore, study_id: int, path: str | Path) -> Path:
    """Write the long ratings frame (with unblinded sources) to ``.csv`` or ``.parquet`` by the file suffix.

    The file is created owner-only (0600): it holds every rater's answers next to the hidden sources. In CSV,
    free text that a spreadsheet would run as a formula is prefixed with "'" (see ``spreadsheet_safe``).
    """
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise StudyError(f"export file {str(path)!r} must end in .csv or .parquet")
    frame = store.ratings_frame(study_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
    if path.suffix == ".csv":
        text_columns = frame.select_dtypes(include=["object", "string"]).columns
        frame[text_columns] = frame[text_columns].map(spreadsheet_safe)
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path
