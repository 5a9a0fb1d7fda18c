"""train.candidates: the token cache survives the pack/unpack trip exactly, a size cap keeps a corpus-order prefix,
and the host check passes on the same weights and fails on different logits."""

import json

import numpy as np
import pytest

from train import candidates


def _cache(root, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", rows), ("val", rows // 4)):
        folder = root / split
        folder.mkdir(parents=True)
        np.save(folder / "image_codes.npy", rng.integers(0, 512, (n, 64)).astype(np.int16))
        np.save(folder / "text_ids.npy", rng.integers(0, 1300, (n, 64)).astype(np.int32))
        np.save(folder / "prompt_lengths.npy", rng.integers(0, 10, n).astype(np.int32))
        np.save(folder / "domains.npy", (np.arange(n) % 2).astype(np.int8))
        (folder / "meta.json").write_text(json.dumps({"split": split, "pairs": n, "domains": ["a", "b"]}))
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text(json.dumps({"n": rows, "seed": 0}))
    return root, corpus


def test_pack_then_unpack_gives_back_the_same_arrays_and_dtypes(tmp_path):
    cache, corpus = _cache(tmp_path / "cache", 400)
    rows = candidates.pack(cache, corpus, tmp_path / "pack")
    assert rows == {"train": 400, "val": 100}
    candidates.unpack(tmp_path / "pack", tmp_path / "back", tmp_path / "corpus_there")
    for split in ("train", "val"):
        for name in candidates.ARRAYS:
            original, restored = (
                np.load(root / split / f"{name}.npy") for root in (cache, tmp_path / "back")
            )
            assert restored.dtype == original.dtype and np.array_equal(restored, original)
    recipe = json.loads((tmp_path / "corpus_there" / "corpus.json").read_text())
    assert recipe == {"n": 400, "seed": 0}
    assert (tmp_path / "corpus_there" / "train" / "metadata.jsonl").is_file()


def test_a_size_cap_keeps_an_even_prefix_of_the_training_rows(tmp_path):
    cache, corpus = _cache(tmp_path / "cache", 4000)
    full = candidates.pack(cache, corpus, tmp_path / "full")
    size = sum(p.stat().st_size for p in (tmp_path / "full").glob("*.xz"))
    rows = candidates.pack(cache, corpus, tmp_path / "cut", max_mb=size / 2 / 1e6)
    assert rows["val"] == full["val"] and 0 < rows["train"] < full["train"] and rows["train"] % 2 == 0
    assert sum(p.stat().st_size for p in (tmp_path / "cut").glob("*.xz")) <= size / 2
    candidates.unpack(tmp_path / "cut", tmp_path / "back", tmp_path / "c")
    restored = np.load(tmp_path / "back" / "train" / "image_codes.npy")
    assert np.array_equal(restored, np.load(cache / "train" / "image_codes.npy")[: rows["train"]])
    assert json.loads((tmp_path / "back" / "train" / "meta.json").read_text())["pairs"] == rows["train"]


def test_report_ids_that_do_not_fit_int16_are_refused(tmp_path):
    cache, corpus = _cache(tmp_path / "cache", 40)
    np.save(cache / "train" / "text_ids.npy", np.full((40, 64), 40000, dtype=np.int32))
    with pytest.raises(ValueError, match="int16"):
        candidates.pack(cache, corpus, tmp_path / "pack")


def test_subset_copies_the_first_pairs_with_their_images(tmp_path):
    from medim.data.synthetic import write_corpus

    write_corpus(tmp_path / "corpus", 80, image_size=32, split_fractions=(0.5, 0.5, 0.0), progress=False)
    assert candidates.subset(tmp_path / "corpus", "val", 6, tmp_path / "part") == 6
    lines = (tmp_path / "part" / "val" / "metadata.jsonl").read_text().splitlines()
    source = (tmp_path / "corpus" / "val" / "metadata.jsonl").read_text().splitlines()[:6]
    assert lines == source
    for line in lines:
        assert (tmp_path / "part" / "val" / json.loads(line)["image"]).is_file()
    assert (tmp_path / "part" / "corpus.json").is_file()


def test_host_check_passes_on_the_same_weights_and_fails_on_other_logits(tmp_path, capsys):
    reference = tmp_path / "reference.npy"
    assert candidates.main(["reference", str(reference)]) == 0
    assert candidates.main(["check", str(reference)]) == 0
    logits = np.load(reference)
    np.save(reference, logits + 0.5)
    assert candidates.main(["check", str(reference)]) == 3
    assert "FAILED" in capsys.readouterr().out
