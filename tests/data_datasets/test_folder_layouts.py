"""PairedFolderDataset, PathGenDataset, IUXrayDataset and the build_dataset registry on tiny fixture trees."""

from __future__ import annotations

import json

import pytest

from medim.data.datasets import (
    DATASET_KINDS,
    IUXrayDataset,
    ManifestDataset,
    MissingFileError,
    PairedFolderDataset,
    PathGenDataset,
    build_dataset,
)

# ----------------------------------------------------------------------------------------------------------
# Paired folder
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def paired_root(tmp_path, image_writer):
    root = tmp_path / "medim_release"
    image_writer(root / "train" / "case_a.png")
    (root / "train" / "case_a.txt").write_text("Heart normal.\nLungs clear.\n")
    image_writer(root / "train" / "case_b.jpg", mode="RGB")
    (root / "train" / "case_b.txt").write_text("Right effusion.")
    (root / "train" / "notes.txt").write_text("a text file without an image is ignored")
    return root


def test_paired_folder_pairs_images_with_reports(paired_root):
    dataset = PairedFolderDataset(paired_root, "train", domain="chest_xray")
    records = list(dataset)
    assert [(r.id, r.report, r.image.mode) for r in records] == [
        ("case_a", "Heart normal. Lungs clear.", "L"),
        ("case_b", "Right effusion.", "RGB"),
    ]
    assert all(r.domain == "chest_xray" and r.labels is None for r in records)


def test_paired_folder_errors(paired_root, image_writer):
    with pytest.raises(MissingFileError, match=r"split folder not found: .*medim_release/val"):
        PairedFolderDataset(paired_root, "val", domain="chest_xray")
    with pytest.raises(ValueError, match="domain must be one of"):
        PairedFolderDataset(paired_root, "train", domain="xray")
    image_writer(paired_root / "train" / "case_c.png")
    with pytest.raises(MissingFileError, match=r"missing: .*case_c\.txt"):
        PairedFolderDataset(paired_root, "train", domain="chest_xray")
    (paired_root / "train" / "case_c.txt").write_text("ok.")
    image_writer(paired_root / "train" / "case_c.jpg")
    with pytest.raises(ValueError, match="two images share the stem 'case_c'"):
        PairedFolderDataset(paired_root, "train", domain="chest_xray")


# ----------------------------------------------------------------------------------------------------------
# PathGen
# ----------------------------------------------------------------------------------------------------------


def test_pathgen_json_list_with_file_path(tmp_path, image_writer):
    image_writer(tmp_path / "patches" / "TCGA-A1_1024_2048.png", mode="RGB")
    records = [{"file_path": "TCGA-A1_1024_2048.png", "caption": "  Dense tumour cells\nwith mitoses. "}]
    annotations = tmp_path / "pathgen.json"
    annotations.write_text(json.dumps(records))
    (record,) = PathGenDataset(annotations, image_root=tmp_path / "patches")
    assert (record.id, record.report, record.domain) == (
        "TCGA-A1_1024_2048",
        "Dense tumour cells with mitoses.",
        "pathology",
    )
    assert record.image.mode == "RGB"


def test_pathgen_jsonl_with_image_and_id(tmp_path, image_writer):
    image_writer(tmp_path / "p1.jpg", mode="RGB")
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"id": "x1", "image": "p1.jpg", "caption": "Fibrosis."}) + "\n"
    )
    (record,) = PathGenDataset(tmp_path / "train.jsonl")  # image_root defaults to the file's folder
    assert (record.id, record.report) == ("x1", "Fibrosis.")


def test_pathgen_errors(tmp_path, image_writer):
    annotations = tmp_path / "a.jsonl"
    annotations.write_text(json.dumps({"image": "missing.png", "caption": "Text."}) + "\n")
    with pytest.raises(MissingFileError, match=r"missing: .*missing\.png"):
        PathGenDataset(annotations)
    annotations.write_text(json.dumps({"image": "missing.png"}) + "\n")
    with pytest.raises(ValueError, match=r"a\.jsonl record 1: needs a non-empty 'caption'"):
        PathGenDataset(annotations)
    with pytest.raises(MissingFileError, match=r"PathGen annotations not found: .*nope\.json"):
        PathGenDataset(tmp_path / "nope.json")


# ----------------------------------------------------------------------------------------------------------
# IU-Xray (R2Gen layout)
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def iu_root(tmp_path, image_writer):
    root = tmp_path / "iu_xray"
    annotation = {"train": [], "val": [], "test": []}
    for split, study in (
        ("train", "CXR1_1_IM-0001"),
        ("train", "CXR2_1_IM-0652"),
        ("test", "CXR3_1_IM-1384"),
    ):
        paths = [f"{study}/0.png", f"{study}/1.png"]
        for path in paths:
            image_writer(root / "images" / path)
        annotation[split].append(
            {"id": study, "report": f"The heart is normal in {study}. ", "image_path": paths, "split": split}
        )
    (root / "annotation.json").write_text(json.dumps(annotation))
    return root


def test_iu_xray_first_image_per_study(iu_root):
    dataset = IUXrayDataset(iu_root, "train")
    assert [entry.id for entry in dataset.entries] == ["CXR1_1_IM-0001", "CXR2_1_IM-0652"]
    assert [entry.image_path.name for entry in dataset.entries] == ["0.png", "0.png"]
    record = dataset[0]
    # the same report format as the synthetic corpus and the app: R2Gen's findings text under its header
    assert (record.report, record.domain) == (
        "FINDINGS: The heart is normal in CXR1_1_IM-0001.",
        "chest_xray",
    )


def test_iu_xray_all_images_and_empty_split(iu_root):
    dataset = IUXrayDataset(iu_root, "test", images="all")
    assert [entry.id for entry in dataset.entries] == ["CXR3_1_IM-1384_0", "CXR3_1_IM-1384_1"]
    assert len(IUXrayDataset(iu_root, "val")) == 0


def test_iu_xray_errors(iu_root):
    (iu_root / "images" / "CXR2_1_IM-0652" / "0.png").unlink()
    with pytest.raises(MissingFileError, match=r"missing: .*CXR2_1_IM-0652/0\.png"):
        IUXrayDataset(iu_root, "train")
    with pytest.raises(ValueError, match="unknown IU-Xray split 'dev'"):
        IUXrayDataset(iu_root, "dev")
    with pytest.raises(ValueError, match="images must be 'first' or 'all'"):
        IUXrayDataset(iu_root, "test", images="frontal")
    (iu_root / "annotation.json").unlink()
    with pytest.raises(MissingFileError, match=r"annotation file not found: .*annotation\.json"):
        IUXrayDataset(iu_root, "test")


# ----------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------


def test_build_dataset_routes_each_kind(tmp_path, paired_root, iu_root, image_writer):
    image_writer(tmp_path / "syn" / "train" / "images" / "s0.png")
    row = {"id": "s0", "image": "images/s0.png", "report": "x.", "domain": "pathology"}
    (tmp_path / "syn" / "train" / "metadata.jsonl").write_text(json.dumps(row) + "\n")
    image_writer(tmp_path / "gen" / "images" / "g0.png")
    (tmp_path / "gen" / "pairs.jsonl").write_text(
        json.dumps({**row, "id": "g0", "image": "images/g0.png"}) + "\n"
    )
    image_writer(tmp_path / "pg" / "p.png")
    (tmp_path / "pg" / "test.json").write_text(json.dumps([{"file_path": "p.png", "caption": "c."}]))

    assert isinstance(build_dataset("synthetic", tmp_path / "syn", "train"), ManifestDataset)
    assert build_dataset("manifest", tmp_path / "syn", "train")[0].id == "s0"
    assert build_dataset("generated", tmp_path / "gen")[0].id == "g0"
    assert len(build_dataset("paired-folder", paired_root, "train", domain="chest_xray")) == 2
    assert isinstance(build_dataset("PathGen", tmp_path / "pg", "test"), PathGenDataset)
    assert isinstance(build_dataset("pathgen", tmp_path / "pg" / "test.json"), PathGenDataset)
    assert isinstance(build_dataset("iu_xray", iu_root, "train"), IUXrayDataset)
    assert DATASET_KINDS.keys() >= {
        "manifest",
        "synthetic",
        "generated",
        "paired_folder",
        "mimic_cxr",
        "pathgen",
    }


def test_build_dataset_errors(tmp_path, iu_root):
    with pytest.raises(ValueError, match=r"unknown dataset kind 'chexpert'; known kinds: .*mimic_cxr"):
        build_dataset("chexpert", tmp_path)
    with pytest.raises(ValueError, match="'iu_xray' needs a split"):
        build_dataset("iu_xray", iu_root)
    with pytest.raises(ValueError, match="generated pairs have no splits"):
        build_dataset("generated", tmp_path, "train")
