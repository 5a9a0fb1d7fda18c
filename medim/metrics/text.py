"""Report-generation metrics: corpus-level COCO-caption metrics and, separately labelled, sentence-level NLTK BLEU.

Two families of numbers circulate in the report-generation literature and they are not comparable:

- **Corpus-level** (``coco_*`` keys): BLEU-1..4, METEOR, ROUGE-L and CIDEr from ``pycocoevalcap`` after its
  Stanford PTB tokenisation (lower-cased, punctuation removed). BLEU pools n-gram counts and the brevity penalty
  over the whole test set (the R2Gen / MIMIC-CXR convention); ROUGE-L is the mean per-report F-score
  (beta 1.2); METEOR 1.5 is the corpus score of the jar; CIDEr-D's idf comes from the evaluated references, so
  it needs a corpus (it is 0 for a single report).
- **Sentence-level NLTK** (``nltk_sentence_bleu_*`` keys): the mean over reports of
  ``nltk.translate.bleu_score.sentence_bleu`` with cumulative uniform weights and no smoothing, on lower-cased
  alphanumeric tokens. Averaging per-report scores is what several MLLM report-generation codebases do; it gives
  a lower BLEU-3/4 than the corpus-level value, so compare it only with numbers computed the same way.

The PTB tokenizer and METEOR run Java (``java`` on ``PATH``; the jars ship inside ``pycocoevalcap`` so nothing is
downloaded). :class:`JavaNotFoundError` says so clearly when Java is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "COCO_METRICS",
    "JavaNotFoundError",
    "corpus_report_metrics",
    "java_available",
    "ptb_tokenize",
    "require_java",
    "report_metrics",
    "sentence_bleu_nltk",
]

COCO_METRICS = ("bleu", "meteor", "rouge", "cider")
_WORD = re.compile(r"[a-z0-9]+")


class JavaNotFoundError(RuntimeError):
    """METEOR and the PTB tokenizer need a Java runtime and none was found on PATH."""


def java_available() -> bool:
    return shutil.which("java") is not None


def require_java(what: str) -> str:
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            f"{what} needs a Java runtime (java on PATH) and none was found: install one, e.g. "
            "`apt-get install openjdk-17-jre-headless`, or compute only the NLTK metrics "
            "(`python -m medim evaluate --text-metrics nltk`)."
        )
    return java


def _coco_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pycocoevalcap is not installed: pip install pycocoevalcap==1.2")
    return Path(next(iter(spec.submodule_search_locations)))


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Validate inputs; returns the references as one list of strings per hypothesis."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses and references must be sequences of strings, not a single string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must pair up")
    if not hypotheses:
        raise ValueError("no reports to score: hypotheses and references are empty")
    ref_lists = []
    for index, (hyp, ref) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise ValueError(f"hypothesis {index} is a {type(hyp).__name__}, expected str")
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(
                f"reference {index} must be a string or a non-empty list of strings, got {ref!r}"
            )
        ref_lists.append(refs)
    return ref_lists


# ---------------------------------------------------------------------------------------------------------
# Corpus level (pycocoevalcap)
# ---------------------------------------------------------------------------------------------------------


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Stanford PTB tokenisation as pycocoevalcap does it: lower-cased, punctuation tokens removed.

    Runs the CoreNLP jar shipped with pycocoevalcap on a temporary file in the system temp folder (the library's
    own wrapper writes into its install folder, which may be read-only). Empty texts stay empty.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    java = require_java("the PTB tokenizer")
    jar = _coco_dir() / "tokenizer" / STANFORD_CORENLP_3_4_1_JAR
    lines = [" ".join(str(text).split()) for text in texts]
    non_empty = [index for index, line in enumerate(lines) if line]
    tokenized = [""] * len(lines)
    if not non_empty:
        return tokenized
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as handle:
        handle.write("\n".join(lines[index] for index in non_empty))
        source = handle.name
    try:
        result = subprocess.run(
            [
                java,
                "-cp",
                str(jar),
                "edu.stanford.nlp.process.PTBTokenizer",
                "-preserveLines",
                "-lowerCase",
                source,
            ],
            capture_output=True,
            check=False,
        )
    finally:
        Path(source).unlink(missing_ok=True)
    output = result.stdout.decode("utf-8").split("\n")
    if result.returncode != 0 or len(output) < len(non_empty):
        raise RuntimeError(
            f"the PTB tokenizer failed (exit {result.returncode}, {len(output)} lines for {len(non_empty)} texts): "
            f"{result.stderr.decode(errors='replace')[-500:]}"
        )
    punctuation = set(PUNCTUATIONS)
    for index, line in zip(non_empty, output):
        tokenized[index] = " ".join(
            word for word in line.rstrip().split(" ") if word and word not in punctuation
        )
    return tokenized


@functools.lru_cache(maxsize=1)
def _meteor_scorer():
    """One METEOR 1.5 process per Python process: the jar takes seconds to load its paraphrase table."""
    require_java("METEOR")
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    scorer = _meteor_scorer()
    try:
        score, _ = scorer.compute_score(gts, res)
    except (ValueError, BrokenPipeError) as error:  # the jar died: its stdout ended early
        _meteor_scorer.cache_clear()
        stderr = scorer.meteor_p.stderr.read(2000).decode(errors="replace") if scorer.meteor_p.stderr else ""
        raise RuntimeError(f"METEOR (java -jar meteor-1.5.jar) failed: {error}; {stderr}") from error
    return float(score)


def corpus_report_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    metrics: Sequence[str] = COCO_METRICS,
) -> dict[str, float]:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) through pycocoevalcap.

    Args:
        hypotheses: N generated reports.
        references: N reference reports (a string, or a list of strings for several references each).
        metrics: any of ``"bleu"``, ``"meteor"``, ``"rouge"``, ``"cider"``.

    Returns:
        ``{"coco_bleu_1": ..., "coco_bleu_4": ..., "coco_meteor": ..., "coco_rouge_l": ..., "coco_cider": ...}``
        (only the requested families), values in [0, 1] except CIDEr (0–10).
    """
    ref_lists = _check_pairs(hypotheses, references)
    unknown = set(metrics) - set(COCO_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {COCO_METRICS}")
    flat = list(hypotheses) + [ref for refs in ref_lists for ref in refs]
    tokens = ptb_tokenize(flat)
    res = {index: [tokens[index]] for index in range(len(hypotheses))}
    gts, cursor = {}, len(hypotheses)
    for index, refs in enumerate(ref_lists):
        gts[index] = tokens[cursor : cursor + len(refs)]
        cursor += len(refs)
    scores: dict[str, float] = {}
    if "bleu" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"coco_bleu_{n}": float(value) for n, value in enumerate(bleu, start=1)})
    if "meteor" in metrics:
        scores["coco_meteor"] = _meteor(gts, res)
    if "rouge" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        scores["coco_rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    if "cider" in metrics:
        from pycocoevalcap.cider.cider import Cider

        scores["coco_cider"] = float(Cider().compute_score(gts, res)[0])
    return scores


# ---------------------------------------------------------------------------------------------------------
# Sentence level (NLTK)
# ---------------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def sentence_bleu_nltk(
    hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], max_order: int = 4
) -> dict[str, float]:
    """Mean sentence-level BLEU-1..max_order (NLTK, cumulative uniform weights, no smoothing).

    Tokens are lower-cased alphanumeric runs (punctuation dropped). Returns ``{"nltk_sentence_bleu_1": ...}``.
    """
    from nltk.translate.bleu_score import sentence_bleu

    ref_lists = _check_pairs(hypotheses, references)
    if not 1 <= max_order <= 4:
        raise ValueError(f"max_order must be in 1..4, got {max_order}")
    totals = [0.0] * max_order
    with warnings.catch_warnings():
        # NLTK warns for every hypothesis without a higher-order match; the score is 0 there, which is the point
        warnings.simplefilter("ignore")
        for hyp, refs in zip(hypotheses, ref_lists):
            ref_tokens = [_words(ref) for ref in refs]
            hyp_tokens = _words(hyp)
            for order in range(1, max_order + 1):
                weights = tuple([1.0 / order] * order)
                totals[order - 1] += float(sentence_bleu(ref_tokens, hyp_tokens, weights=weights))
    return {f"nltk_sentence_bleu_{n}": total / len(hypotheses) for n, total in enumerate(totals, start=1)}


def report_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    families: Sequence[str] = ("coco", "nltk"),
    coco_metrics: Sequence[str] = COCO_METRICS,
) -> dict[str, float]:
    """Both families in one dict (``families`` picks ``"coco"`` and/or ``"nltk"``)."""
    unknown = set(families) - {"coco", "nltk"}
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of ('coco', 'nltk'), got {list(families)}")
    scores: dict[str, float] = {}
    if "coco" in families:
        scores.update(corpus_report_metrics(hypotheses, references, coco_metrics))
    if "nltk" in families:
        scores.update(sentence_bleu_nltk(hypotheses, references))
    return scores
