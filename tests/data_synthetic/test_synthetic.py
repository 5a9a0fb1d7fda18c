"""Tests for the synthetic image–report generator: determinism, splits, held-out phrasing, image/label agreement."""

import json
import shlex

import numpy as np
import pytest
from PIL import Image

from medim.data import _synthetic_chest, _synthetic_pathology
from medim.data._synthetic_text import all_banks, heldout_signatures
from medim.data.synthetic import (
    DOMAINS,
    corpus_recipe,
    generate_pair,
    generate_report,
    main,
    split_sizes,
    write_corpus,
)
from medim.metrics.labeler import CHEST_FINDINGS, PATHOLOGY_FINDINGS


def _bytes(pair):
    return pair.image.tobytes()


def test_same_seed_gives_identical_pair():
    for domain in DOMAINS:
        a = generate_pair(7, seed=3, split="val", domain=domain, image_size=64)
        b = generate_pair(7, seed=3, split="val", domain=domain, image_size=64)
        assert _bytes(a) == _bytes(b) and a.report == b.report and a.labels == b.labels and a.id == b.id


def test_other_seed_or_index_gives_other_pair():
    base = generate_pair(4, seed=0, image_size=48)
    assert _bytes(base) != _bytes(generate_pair(4, seed=1, image_size=48))
    assert _bytes(base) != _bytes(generate_pair(6, seed=0, image_size=48))


def test_image_format_and_size():
    for index in range(4):
        pair = generate_pair(index, image_size=64)
        assert pair.image.mode == "RGB" and pair.image.size == (64, 64)
        assert pair.domain == DOMAINS[index % 2]
    grey = np.asarray(generate_pair(0, domain="chest_xray", image_size=32).image)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_scene_and_report_do_not_depend_on_image_size():
    for index in range(4):
        small, large = generate_pair(index, image_size=64), generate_pair(index, image_size=128)
        assert small.report == large.report and small.labels == large.labels
        # The same scene drawn at two sizes: at a coarse 16x16 scale the layouts agree.
        coarse = [np.asarray(p.image.resize((16, 16), Image.BOX), dtype=float) for p in (small, large)]
        other = np.asarray(
            generate_pair(index + 2, image_size=64).image.resize((16, 16), Image.BOX), dtype=float
        )
        assert np.abs(coarse[0] - coarse[1]).mean() < 0.5 * np.abs(coarse[0] - other).mean()


def test_generate_report_matches_generate_pair():
    for index in range(6):
        pair = generate_pair(index, split="test", image_size=32)
        assert generate_report(index, split="test") == (pair.report, pair.labels, pair.attributes)


def test_splits_are_disjoint_and_named():
    ids, images = set(), set()
    for split in ("train", "val", "test"):
        for index in range(3):
            pair = generate_pair(index, split=split, image_size=32)
            assert pair.id.startswith(split)
            ids.add(pair.id)
            images.add(_bytes(pair))
    assert len(ids) == 9 and len(images) == 9


def test_labels_cover_domain_findings():
    for index in range(20):
        report, labels, attributes = generate_report(index, seed=5)
        domain = DOMAINS[index % 2]
        expected = CHEST_FINDINGS if domain == "chest_xray" else PATHOLOGY_FINDINGS
        assert set(labels) == set(expected) and set(labels.values()) <= {0, 1}
        positives = {k for k, v in labels.items() if v == 1 and k != "No Finding"}
        assert positives == set(attributes) - {"Tissue"}
        if domain == "chest_xray":
            assert labels["No Finding"] == int(not positives - {"Support Devices"})
            assert len(positives) <= 3
            assert report.startswith("FINDINGS: ") and " IMPRESSION: " in report


def test_report_lengths_fit_the_token_budget():
    for index in range(200):
        report, _labels, _attrs = generate_report(index, seed=2, split="test")
        assert 12 <= len(report.split()) <= 45, report


def test_no_finding_rate_is_realistic():
    rng = np.random.default_rng(0)
    scenes = [_synthetic_chest.sample_findings(rng) for _ in range(600)]
    normal = np.mean([not set(s) - {"Support Devices"} for s in scenes])
    assert 0.22 <= normal <= 0.33


def test_heldout_signatures_are_unique_to_heldout_templates():
    signatures = heldout_signatures()
    assert len(signatures) >= 30
    common_text = [t.lower() for b in all_banks() for t in b.common]
    for template, signature in signatures.items():
        assert len(signature) >= 8, template
        assert not any(signature in text for text in common_text), (template, signature)


def test_heldout_phrasings_only_in_test_split():
    signatures = set(heldout_signatures().values())
    for split in ("train", "val"):
        for index in range(250):
            report = generate_report(index, seed=11, split=split)[0].lower()
            assert not any(sig in report for sig in signatures), (split, report)
    seen = set()
    for index in range(250):
        report = generate_report(index, seed=11, split="test")[0].lower()
        seen |= {sig for sig in signatures if sig in report}
    assert len(seen) >= 20


def test_reports_are_varied():
    sentences = set()
    for index in range(300):
        report = generate_report(index, seed=4)[0]
        sentences.update(
            s.strip() for s in report.replace("FINDINGS:", "").replace("IMPRESSION:", ".").split(". ")
        )
    assert len(sentences) >= 200


# ------------------------------------------------------------------------------------------------- image ↔ labels


def _chest_population(n=240, size=64):
    pairs = [generate_pair(i, seed=9, domain="chest_xray", image_size=size) for i in range(n)]
    return [(np.asarray(p.image)[..., 0].astype(float) / 255.0, p) for p in pairs]


@pytest.fixture(scope="module")
def chest_population():
    return _chest_population()


def _region(image, x0, x1, y0, y1):
    h, w = image.shape
    return image[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)].mean()


def test_effusion_side_is_brighter_at_the_base(chest_population):
    wins, total = 0, 0
    for image, pair in chest_population:
        attrs = pair.attributes.get("Pleural Effusion")
        if not attrs or attrs["side"] == "bilateral" or attrs["severity"] == "small":
            continue
        right_base = _region(image, 0.12, 0.3, 0.55, 0.75)  # patient right = image left
        left_base = _region(image, 0.7, 0.88, 0.55, 0.75)
        brighter = right_base > left_base if attrs["side"] == "right" else left_base > right_base
        wins += int(brighter)
        total += 1
    assert total >= 8 and wins / total >= 0.85, (wins, total)


def test_cardiomegaly_widens_the_heart(chest_population):
    beside_heart = {0: [], 1: []}
    for image, pair in chest_population:
        if pair.labels["Pleural Effusion"] or pair.labels["Edema"]:
            continue
        beside_heart[pair.labels["Cardiomegaly"]].append(_region(image, 0.66, 0.8, 0.58, 0.7))
    assert len(beside_heart[1]) >= 8 and len(beside_heart[0]) >= 20
    assert np.mean(beside_heart[1]) > np.mean(beside_heart[0]) + 0.08


LATERAL_FINDINGS = [
    ("Pleural Effusion", {"side": "right", "severity": "small", "location": None}, +1),
    ("Pleural Effusion", {"side": "left", "severity": "moderate", "location": None}, +1),
    ("Pneumothorax", {"side": "right", "severity": "small", "location": "apical"}, -1),
    ("Pneumothorax", {"side": "left", "severity": "large", "location": "apical"}, -1),
    ("Consolidation", {"side": "left", "severity": None, "location": "upper"}, +1),
    ("Lung Opacity", {"side": "right", "severity": None, "location": "middle"}, +1),
    ("Lung Lesion", {"side": "right", "severity": None, "location": "lower", "type": "nodule"}, +1),
    ("Lung Lesion", {"side": "left", "severity": None, "location": "upper", "type": "mass"}, +1),
    ("Atelectasis", {"side": "left", "severity": None, "location": "lower"}, +1),
]


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("finding,attrs,sign", LATERAL_FINDINGS)
def test_finding_is_drawn_on_its_side(finding, attrs, sign, size):
    """Rendering a scene with and without one finding changes pixels on the reported side only."""
    for seed in range(3):
        without = _synthetic_chest.render({}, np.random.default_rng(seed), size).astype(float)
        with_it = _synthetic_chest.render({finding: attrs}, np.random.default_rng(seed), size).astype(float)
        change = sign * (with_it - without)
        half = size // 2
        on_side = change[:, :half] if attrs["side"] == "right" else change[:, half:]
        other = change[:, half:] if attrs["side"] == "right" else change[:, :half]
        assert (
            on_side.sum() > 20 * size / 64 * 255 * 0.1
        )  # a visible change of at least ~2 gray levels x 10 px
        assert on_side.sum() > 8 * np.abs(other).sum()
        zone = {"upper": (0.0, 0.45), "middle": (0.3, 0.7), "lower": (0.5, 1.0)}.get(attrs["location"])
        if zone:
            rows = np.abs(change).sum(axis=1)
            inside = rows[int(zone[0] * size) : int(zone[1] * size)].sum()
            assert inside > 0.6 * rows.sum()


def test_edema_brightens_both_perihilar_regions():
    for seed in range(3):
        without = _synthetic_chest.render({}, np.random.default_rng(seed), 64).astype(float)
        edema = {"Edema": {"side": "bilateral", "severity": "mild", "location": "perihilar"}}
        change = _synthetic_chest.render(edema, np.random.default_rng(seed), 64).astype(float) - without
        assert change[20:45, 8:28].mean() > 3 and change[20:45, 36:56].mean() > 3


def test_support_device_adds_a_bright_line():
    for device in _synthetic_chest.DEVICE_TYPES:
        rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
        without = _synthetic_chest.render({}, rng_a, 64).astype(float)
        found = {"Support Devices": {"side": None, "severity": None, "location": None, "type": device}}
        change = _synthetic_chest.render(found, rng_b, 64).astype(float) - without
        assert (change > 40).sum() >= 15, device


def _pathology_stats(tissue, findings, seeds=range(3), size=64):
    images = [_synthetic_pathology.render(tissue, findings, np.random.default_rng(s), size) for s in seeds]
    return np.stack(images).astype(float) / 255.0


def test_tumour_patches_are_more_cellular_than_benign():
    for tissue in ("colon", "breast", "lung"):
        benign = _pathology_stats(tissue, {})
        low = _pathology_stats(tissue, {"Tumor": {"severity": "low", "type": "carcinoma"}})
        high = _pathology_stats(
            tissue, {"Tumor": {"severity": "high", "type": "carcinoma"}, "High Grade": {}}
        )
        # Haematoxylin (purple-blue) absorbs red: nuclear density shows as a lower red channel.
        assert low[..., 0].mean() < benign[..., 0].mean() - 0.03, tissue
        assert high[..., 0].mean() < benign[..., 0].mean() - 0.03, tissue


def test_necrosis_and_inflammation_change_the_patch():
    tumor = {"Tumor": {"severity": "high", "type": "carcinoma"}, "High Grade": {}}
    plain = _pathology_stats("colon", tumor)
    necrotic = _pathology_stats("colon", {**tumor, "Necrosis": {"severity": "extensive"}})
    assert np.abs(necrotic - plain).mean() > 0.02
    benign = _pathology_stats("breast", {})
    inflamed = _pathology_stats("breast", {"Inflammation": {"severity": "marked"}})
    assert inflamed[..., 0].mean() < benign[..., 0].mean() - 0.02


# ------------------------------------------------------------------------------------------------- corpus writer


def test_write_corpus_layout(tmp_path):
    sizes = write_corpus(tmp_path, 10, seed=1, image_size=32, progress=False)
    assert sizes == {"train": 8, "val": 1, "test": 1}
    for split, count in sizes.items():
        lines = (tmp_path / split / "metadata.jsonl").read_text().splitlines()
        assert len(lines) == count
        for line in lines:
            record = json.loads(line)
            assert set(record) == {"id", "image", "report", "domain", "labels", "attributes"}
            assert record["image"] == f"images/{record['id']}.png"
            image = Image.open(tmp_path / split / record["image"])
            assert image.mode == "RGB" and image.size == (32, 32)
            assert record["domain"] in DOMAINS and set(record["labels"].values()) <= {0, 1, -1}
            index = int(record["id"].rsplit("-", 1)[1])
            assert record["report"] == generate_report(index, seed=1, split=split, domain=record["domain"])[0]


def test_write_corpus_single_domain_and_cli(tmp_path):
    write_corpus(tmp_path / "a", 4, domains=("pathology",), image_size=16, progress=False)
    records = [json.loads(x) for x in (tmp_path / "a" / "train" / "metadata.jsonl").read_text().splitlines()]
    assert {r["domain"] for r in records} == {"pathology"}
    assert main(["--n", "3", "--out", str(tmp_path / "b"), "--image-size", "16", "--no-progress"]) == 0
    assert len(list((tmp_path / "b").glob("*/images/*.png"))) == 3


def test_the_recorded_command_writes_the_same_corpus_again(tmp_path):
    write_corpus(
        tmp_path / "a", 6, seed=3, image_size=16, domains=("pathology", "chest_xray"), progress=False
    )
    recipe = corpus_recipe(tmp_path / "a" / "test" / "metadata.jsonl")
    assert recipe["n"] == 6 and recipe["seed"] == 3 and recipe["sizes"] == split_sizes(6, (0.8, 0.1, 0.1))
    argv = shlex.split(recipe["command"])
    assert argv[:3] == ["python", "-m", "medim.data.synthetic"]
    argv[argv.index("--out") + 1] = str(tmp_path / "b")
    assert main([*argv[3:], "--no-progress"]) == 0
    written = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert written == sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    for relative in written:
        if relative.name != "corpus.json":  # it names its own folder
            assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert corpus_recipe(tmp_path / "a") == recipe and corpus_recipe(tmp_path / "elsewhere") is None


def test_contact_sheet_cli(tmp_path):
    out = tmp_path / "sheet.png"
    assert (
        main(["contact-sheet", "--out", str(out), "--count", "2", "--columns", "2", "--image-size", "32"])
        == 0
    )
    assert Image.open(out).size[0] > 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"index": -1},
        {"index": 1.5},
        {"index": 0, "split": "dev"},
        {"index": 0, "domain": "mri"},
        {"index": 0, "image_size": 8},
        {"index": 0, "seed": -3},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        generate_pair(**kwargs)


def test_bad_corpus_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="split_fractions"):
        split_sizes(10, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="n must be"):
        write_corpus(tmp_path, 0, progress=False)
    with pytest.raises(ValueError, match="domain"):
        write_corpus(tmp_path, 2, domains=("ct",), progress=False)
