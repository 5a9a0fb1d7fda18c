"""MimicCxrDataset on a miniature MIMIC-CXR-JPG tree: split/metadata/CheXpert CSVs, report files, view filter."""

from __future__ import annotations

import gzip

import pytest

from medim.data.datasets import MimicCxrDataset, MissingFileError, build_dataset

# (subject_id, study_id, dicom_id, ViewPosition, split)
IMAGES = [
    ("10000032", "50414267", "02aa804e-frontal", "PA", "train"),
    ("10000032", "50414267", "174413ec-lateral", "LATERAL", "train"),
    ("10000032", "53189527", "2a2277a9-frontal", "AP", "train"),
    ("10000898", "50771383", "1a8c5b1f-frontal", "PA", "validate"),
    ("10000898", "50771383", "9ab4d6c3-lateral", "LL", "validate"),
    ("11000011", "51029426", "3b0e2f55-frontal", "AP", "test"),
]

REPORTS = {
    "50414267": """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:
 There is no focal consolidation.  No pleural effusion.

 IMPRESSION:
 No acute cardiopulmonary process.
""",
    "53189527": "FINDINGS: Small left effusion.\n\nIMPRESSION: Left effusion, new.",
    "50771383": "IMPRESSION: Cardiomegaly without edema.",
    "51029426": "INDICATION: fever.\n\nThe lungs are clear.",
}

CHEXPERT = """subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices
10000032,50414267,,,,,,,,,1.0,,,,,
10000032,53189527,,,,,,,,,,1.0,,-1.0,,
10000898,50771383,,1.0,,0.0,,,,,,,,,,
"""


@pytest.fixture
def mimic_root(tmp_path, image_writer):
    root = tmp_path / "mimic-cxr-jpg"
    split_rows = ["dicom_id,study_id,subject_id,split"]
    metadata_rows = [
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns"
    ]
    for subject, study, dicom, view, split in IMAGES:
        image_writer(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg")
        split_rows.append(f"{dicom},{study},{subject},{split}")
        metadata_rows.append(f"{dicom},{subject},{study},CHEST (PA AND LAT),{view},10,12")
    # The release ships the split and metadata tables gzipped: read them that way.
    (root / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(gzip.compress("\n".join(split_rows).encode()))
    (root / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(gzip.compress("\n".join(metadata_rows).encode()))
    (root / "mimic-cxr-2.0.0-chexpert.csv").write_text(CHEXPERT)
    subject_of = {study: subject for subject, study, *_ in IMAGES}
    for study, text in REPORTS.items():
        subject = subject_of[study]
        path = root / "mimic-cxr-reports" / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_frontal_only_keeps_pa_and_ap_views(mimic_root):
    dataset = MimicCxrDataset(mimic_root, "train")
    assert [entry.id for entry in dataset.entries] == ["02aa804e-frontal", "2a2277a9-frontal"]
    everything = MimicCxrDataset(mimic_root, "train", frontal_only=False)
    assert len(everything) == 3


def test_records_carry_findings_and_impression_and_chexpert_labels(mimic_root):
    first, second = MimicCxrDataset(mimic_root, "train")
    # the sections keep their headers: the report format of the synthetic corpus, the examples and the app
    assert first.report == (
        "FINDINGS: There is no focal consolidation. No pleural effusion. IMPRESSION: No acute cardiopulmonary "
        "process."
    )
    plain = MimicCxrDataset(mimic_root, "train", section_headers=False)[0]
    assert (
        plain.report
        == "There is no focal consolidation. No pleural effusion. No acute cardiopulmonary process."
    )
    assert first.labels == {"No Finding": 1}
    assert first.domain == "chest_xray"
    assert first.image.mode == "L" and first.image.size == (12, 10)
    assert second.report == "FINDINGS: Small left effusion. IMPRESSION: Left effusion, new."
    assert second.labels == {"Pleural Effusion": 1, "Pneumonia": -1}


def test_split_aliases_sections_and_missing_labels(mimic_root):
    (val_record,) = MimicCxrDataset(mimic_root, "val")
    assert val_record.report == "IMPRESSION: Cardiomegaly without edema."
    assert val_record.labels == {"Cardiomegaly": 1, "Edema": 0}
    (test_record,) = MimicCxrDataset(mimic_root, "test")
    assert test_record.report == "FINDINGS: The lungs are clear."  # unsectioned: last paragraph, as findings
    assert test_record.labels is None  # the study is absent from the CheXpert table: not labelled
    impression_only = MimicCxrDataset(mimic_root, "train", sections=("impression",))
    assert impression_only[0].report == "IMPRESSION: No acute cardiopulmonary process."
    (mimic_root / "mimic-cxr-2.0.0-chexpert.csv").unlink()
    assert MimicCxrDataset(mimic_root, "train")[0].labels is None


def test_sections_csv_replaces_report_files(mimic_root, tmp_path):
    sections = tmp_path / "mimic_cxr_sectioned.csv"
    sections.write_text(
        "study,impression,findings,last_paragraph,comparison\n"
        's50414267,No acute process.,"Lungs clear.\n Heart normal.",,\n'
        "s53189527,,,Effusion on the left.,\n"
    )
    first, second = MimicCxrDataset(mimic_root, "train", sections_csv=sections)
    assert first.report == "FINDINGS: Lungs clear. Heart normal. IMPRESSION: No acute process."
    assert second.report == "FINDINGS: Effusion on the left."  # no sections: the last paragraph stands in


def test_missing_files_are_named(mimic_root):
    report = mimic_root / "mimic-cxr-reports" / "files" / "p10" / "p10000032" / "s53189527.txt"
    report.unlink()
    with pytest.raises(MissingFileError, match=r"report file\(s\) missing: .*s53189527\.txt"):
        MimicCxrDataset(mimic_root, "train")
    image = mimic_root / "files" / "p10" / "p10000898" / "s50771383" / "1a8c5b1f-frontal.jpg"
    image.unlink()
    with pytest.raises(MissingFileError, match=r"image file\(s\) missing: .*1a8c5b1f-frontal\.jpg"):
        MimicCxrDataset(mimic_root, "val")
    (mimic_root / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(MissingFileError, match=r"mimic-cxr-2\.0\.0-metadata\.csv .*frontal_only"):
        MimicCxrDataset(mimic_root, "test")
    assert len(MimicCxrDataset(mimic_root, "test", frontal_only=False)) == 1
    (mimic_root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(MissingFileError, match=r"split file not found: .*mimic-cxr-2\.0\.0-split\.csv"):
        MimicCxrDataset(mimic_root, "test")


def test_bad_arguments(mimic_root):
    with pytest.raises(ValueError, match="unknown MIMIC-CXR split 'dev'"):
        MimicCxrDataset(mimic_root, "dev")
    with pytest.raises(ValueError, match="sections must be"):
        MimicCxrDataset(mimic_root, "train", sections=("history",))


def test_registry_builds_mimic_with_options(mimic_root):
    dataset = build_dataset("mimic-cxr", mimic_root, "train", frontal_only=False)
    assert isinstance(dataset, MimicCxrDataset) and len(dataset) == 3
