"""ManifestDataset on the synthetic corpus' metadata.jsonl, generated pairs' pairs.jsonl, and CSV manifests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from medim.data.datasets import ManifestDataset, MissingFileError, PairRecord, build_dataset


def write_synthetic_split(split_dir, image_writer, n=3):
    """A split in the synthetic corpus format: images/<id>.png + metadata.jsonl."""
    rows = []
    for index in range(n):
        sample_id = f"chest_{index:04d}"
        image_writer(split_dir / "images" / f"{sample_id}.png", mode="RGB", value=40 * index)
        rows.append(
            {
                "id": sample_id,
                "image": f"images/{sample_id}.png",
                "report": f"Heart size is normal.\n  Finding number {index} .",
                "domain": "chest_xray",
                "labels": {"Cardiomegaly": 0, "Pleural Effusion": [1, 0, -1][index % 3]},
                "attributes": {"Pleural Effusion": {"side": "left", "severity": "small", "location": "base"}},
            }
        )
    (split_dir / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return rows


def test_reads_the_synthetic_corpus_format(tmp_path, image_writer):
    rows = write_synthetic_split(tmp_path / "train", image_writer)
    dataset = ManifestDataset(tmp_path / "train" / "metadata.jsonl")
    assert len(dataset) == 3
    record = dataset[1]
    assert isinstance(record, PairRecord)
    assert record.id == "chest_0001"
    assert record.report == "Heart size is normal. Finding number 1."  # cleaned
    assert record.domain == "chest_xray"
    assert record.labels == rows[1]["labels"]
    assert record.image.mode == "RGB" and record.image.size == (12, 10)
    assert np.asarray(record.image)[0, 0, 0] == 40
    assert dataset[-1].id == "chest_0002"


def test_folder_path_finds_its_manifest(tmp_path, image_writer):
    write_synthetic_split(tmp_path / "val", image_writer, n=2)
    assert [record.id for record in ManifestDataset(tmp_path / "val")] == ["chest_0000", "chest_0001"]


def test_reads_generated_pairs(tmp_path, image_writer):
    image_writer(tmp_path / "images" / "gen_1.png")
    row = {
        "id": "gen_1",
        "image": "images/gen_1.png",
        "report": "Small right pleural effusion.",
        "domain": "chest_xray",
        "source": {"system": "medim", "checkpoint": "assets/default", "settings": {"steps": 16}},
    }
    (tmp_path / "pairs.jsonl").write_text(json.dumps(row) + "\n")
    record = ManifestDataset(tmp_path)[0]
    assert (record.id, record.report, record.labels) == ("gen_1", "Small right pleural effusion.", None)


def test_csv_manifest_with_defaults(tmp_path, image_writer):
    image_writer(tmp_path / "a.png")
    image_writer(tmp_path / "sub" / "b.jpg")
    (tmp_path / "manifest.csv").write_text(
        "image,report,labels\n"
        'a.png,Mitotic figures are frequent.,"{""mitosis"": 1}"\n'
        "sub/b.jpg,Benign glands.,\n"
    )
    dataset = ManifestDataset(tmp_path / "manifest.csv", domain="pathology")
    first, second = dataset[0], dataset[1]
    assert (first.id, first.domain, first.labels) == ("a", "pathology", {"mitosis": 1})
    assert (second.id, second.labels) == ("sub/b", None)


def test_works_with_a_dataloader(tmp_path, image_writer):
    write_synthetic_split(tmp_path, image_writer, n=3)
    loader = DataLoader(ManifestDataset(tmp_path), batch_size=2, collate_fn=list)
    assert [len(batch) for batch in loader] == [2, 1]
    with pytest.raises(IndexError):
        ManifestDataset(tmp_path)[3]


def test_missing_image_is_named(tmp_path, image_writer):
    write_synthetic_split(tmp_path, image_writer, n=2)
    (tmp_path / "images" / "chest_0001.png").unlink()
    with pytest.raises(MissingFileError, match=r"1 image file\(s\) missing: .*chest_0001\.png") as caught:
        ManifestDataset(tmp_path)
    assert isinstance(caught.value, ValueError)
    # With the check off, the missing file surfaces on access, still named.
    dataset = ManifestDataset(tmp_path, check_files=False)
    with pytest.raises(ValueError, match=r"chest_0001\.png: file not found"):
        dataset[1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"image": "a.png", "report": "x."}', "no 'domain' field"),
        ('{"image": "a.png", "report": "x.", "domain": "dermatology"}', "domain must be one of"),
        ('{"report": "x.", "domain": "pathology"}', "missing 'image'"),
        ('{"image": "a.png", "domain": "pathology"}', "missing 'report'"),
        (
            '{"image": "a.png", "report": "x.", "domain": "pathology", "labels": {"m": 2}}',
            "must be 1, 0 or -1",
        ),
        ('{"image": "a.png", "report": "x.", "domain": "pathology"', "invalid JSON line"),
    ],
)
def test_bad_rows_are_refused_with_their_location(tmp_path, image_writer, line, message):
    image_writer(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=message) as caught:
        ManifestDataset(tmp_path / "metadata.jsonl")
    assert "metadata.jsonl" in str(caught.value)


def test_duplicate_ids_and_missing_manifest(tmp_path, image_writer):
    image_writer(tmp_path / "a.png")
    row = json.dumps({"id": "same", "image": "a.png", "report": "x.", "domain": "pathology"})
    (tmp_path / "metadata.jsonl").write_text(f"{row}\n{row}\n")
    with pytest.raises(ValueError, match="duplicate id 'same'"):
        ManifestDataset(tmp_path)
    with pytest.raises(MissingFileError, match=r"manifest not found: .*nowhere\.jsonl"):
        ManifestDataset(tmp_path / "nowhere.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no manifest in .*empty: expected one of metadata.jsonl"):
        ManifestDataset(tmp_path / "empty")


def test_reads_a_corpus_written_by_the_synthetic_generator(tmp_path):
    """End to end through the documented CLI ``python -m medim.data.synthetic --n N --out DIR``."""
    pytest.importorskip("medim.data.synthetic")
    repo_root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-m",
        "medim.data.synthetic",
        "--n",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    subprocess.run(
        [*command, "--image-size", "32"], cwd=repo_root, check=True, capture_output=True, timeout=120
    )
    records = [
        record for split in ("train", "val", "test") for record in build_dataset("synthetic", tmp_path, split)
    ]
    assert len(records) == 4
    for record in records:
        assert record.domain in ("chest_xray", "pathology")
        assert record.image.mode == "RGB" and record.image.size == (32, 32)
        assert record.report and isinstance(record.labels, dict)
