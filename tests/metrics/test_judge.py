"""The consistency judge: training on a tiny corpus, save/load, and the consistency scores built on it."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from medim.metrics.consistency import judge_consistency, load_vlm_judge, yes_probability
from medim.metrics.judge import ConsistencyJudge, JudgeConfig, load_labelled_split, main
from tests.metrics.fixtures import keyword_labeler


def test_training_learns_and_records_heldout_metrics(tiny_judge):
    history = tiny_judge.record["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    heldout = tiny_judge.record["heldout"]
    assert heldout["split"] == "val"
    assert set(heldout["per_finding"]) == {
        "chest_xray/Cardiomegaly",
        "chest_xray/Pleural Effusion",
        "pathology/Tumor",
    }
    assert all(
        {"accuracy", "auc", "f1", "prevalence", "n"} <= set(row) for row in heldout["per_finding"].values()
    )
    assert heldout["domain_accuracy"] >= 0.9  # grey radiographs vs pink tissue


def test_save_load_round_trip_keeps_predictions(tiny_judge, tiny_corpus, tmp_path):
    loaded = ConsistencyJudge.load(tiny_judge.save(tmp_path / "judge"))
    data = load_labelled_split(tiny_corpus, "test", loaded.config)
    np.testing.assert_allclose(loaded.predict(data.pixels)[0], tiny_judge.predict(data.pixels)[0], atol=1e-6)
    assert loaded.describe()["sha256"] and loaded.describe()["features"] == 16
    saved = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert saved["config"]["findings"]["pathology"] == ["Tumor"]


def test_read_labels_returns_label_dicts_of_the_requested_domain(tiny_judge, tiny_corpus):
    data = load_labelled_split(tiny_corpus, "test", tiny_judge.config)
    labels, seen = tiny_judge.read_labels(data.pixels[:2], ["chest_xray", "pathology"])
    assert set(labels[0]) == {"Cardiomegaly", "Pleural Effusion"} and set(labels[1]) == {"Tumor"}
    assert all(value in (0, 1) for entry in labels for value in entry.values())
    with pytest.raises(ValueError, match="does not know the domain 'ct'"):
        tiny_judge.read_labels(data.pixels[:1], ["ct"])


def test_judge_features_feed_the_domain_frechet_distance(tiny_judge, tiny_corpus):
    from medim.metrics.images import frechet_distance

    data = load_labelled_split(tiny_corpus, "train", tiny_judge.config)
    chest, pathology = data.pixels[data.domain_index == 0], data.pixels[data.domain_index == 1]
    same = frechet_distance(chest, chest, tiny_judge.feature_extractor())["value"]
    across = frechet_distance(chest, pathology, tiny_judge.feature_extractor())["value"]
    assert same == pytest.approx(0.0, abs=1e-4) and across > 0.1


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        JudgeConfig(findings={"chest_xray": ["A"]}, image_size=40, widths=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="non-empty"):
        JudgeConfig(findings={"chest_xray": []})
    with pytest.raises(ValueError, match="pooling"):
        JudgeConfig(findings={"chest_xray": ["A"]}, pooling="max")


def test_flatten_pooling_sees_where_a_feature_is_and_old_configs_read_as_mean():
    import torch

    from medim.metrics.judge import FindingJudgeNet

    torch.manual_seed(0)
    config = dict(findings={"chest_xray": ["A"]}, image_size=48, widths=(4, 8), embed_dim=8)
    # the same blob, moved by 8 px (a multiple of the network's total stride, 4) well inside the image:
    # convolutions are translation-equivariant there, so only where it lies differs between the two images
    left, right = torch.zeros(1, 3, 48, 48), torch.zeros(1, 3, 48, 48)
    left[..., 20:24, 16:20] = 1.0
    right[..., 20:24, 24:28] = 1.0
    embeddings = {}
    for pooling in ("mean", "flatten"):
        network = FindingJudgeNet(JudgeConfig(**config, pooling=pooling)).eval()
        with torch.no_grad():
            embeddings[pooling] = network.embed(torch.cat([left, right]))
    assert network.embedding[0].in_features == 8 * (48 // 4) ** 2  # the whole 12x12 map of 8 channels
    torch.testing.assert_close(embeddings["mean"][0], embeddings["mean"][1])  # position pooled away
    assert (embeddings["flatten"][0] - embeddings["flatten"][1]).abs().max() > 1e-3
    assert JudgeConfig(findings={"chest_xray": ["A"]}).pooling == "mean"  # what judge.json without it meant


class ScriptedJudge:
    """Reads whatever labels it is told to, to test the consistency arithmetic by hand."""

    def __init__(self, readings, seen):
        self.config = SimpleNamespace(
            findings={"chest_xray": ["Cardiomegaly", "Pleural Effusion"], "pathology": ["Tumor"]},
            domains=["chest_xray", "pathology"],
        )
        self.readings, self.seen = readings, seen

    def read_labels(self, images, domains, threshold=0.5):
        return self.readings, self.seen


def test_judge_consistency_arithmetic():
    reports = [
        "The heart is enlarged. No pleural effusion.",
        "The heart is normal. Large effusion.",
        "Adenocarcinoma.",
    ]
    judge = ScriptedJudge(
        readings=[
            {"Cardiomegaly": 1, "Pleural Effusion": 0},
            {"Cardiomegaly": 1, "Pleural Effusion": 1},
            {"Tumor": 1},
        ],
        seen=["chest_xray", "chest_xray", "chest_xray"],
    )
    result = judge_consistency(
        judge, [None] * 3, reports, domains=["chest_xray", "chest_xray", "pathology"], labeler=keyword_labeler
    )
    chest = result["chest_xray"]
    # report truth [[1,0],[0,1]] vs judge [[1,0],[1,1]]: TP 2, FP 1, FN 0
    assert chest["agreement"] == pytest.approx(3 / 4)
    assert chest["f1_micro"] == pytest.approx(4 / 5)
    assert chest["exact_match"] == pytest.approx(1 / 2)
    assert chest["domain_agreement"] == 1.0
    assert result["pathology"]["domain_agreement"] == 0.0  # the judge saw a radiograph
    overall = result["overall"]
    assert overall["agreement"] == pytest.approx(4 / 5) and overall["f1_micro"] == pytest.approx(6 / 7)
    assert overall["domain_agreement"] == pytest.approx(2 / 3)


def test_judge_consistency_input_checks():
    judge = ScriptedJudge([], [])
    with pytest.raises(ValueError, match="2 images but 1 reports"):
        judge_consistency(judge, [None, None], ["a"], domains=["chest_xray"], labeler=keyword_labeler)
    with pytest.raises(ValueError, match="does not know the domain"):
        judge_consistency(judge, [None], ["a"], domains=["ct"], labeler=keyword_labeler)


def test_vlm_judge_is_skipped_with_a_message_and_scores_yes_probability():
    import torch

    judge, message = load_vlm_judge(None)
    assert judge is None and "Qwen2-VL" in message
    judge, message = load_vlm_judge("/nonexistent/qwen2-vl")
    assert judge is None and "could not load" in message
    logits = torch.log(torch.tensor([0.1, 0.3, 0.1, 0.5]))
    assert yes_probability(logits, yes_ids=[1], no_ids=[3]) == pytest.approx(0.3 / 0.8)


def test_judge_cli_trains_and_evaluates(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "judge"
    assert (
        main(
            [
                "train",
                "--corpus",
                str(tiny_corpus),
                "--out",
                str(out),
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "held-out (val)" in capsys.readouterr().out
    assert main(["evaluate", "--judge", str(out), "--corpus", str(tiny_corpus), "--split", "test"]) == 0
    assert "pathology/Tumor" in capsys.readouterr().out
    assert main(["evaluate", "--judge", str(tmp_path / "none"), "--corpus", str(tiny_corpus)]) == 2
    assert "no consistency judge" in capsys.readouterr().err
