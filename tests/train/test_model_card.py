"""Publishing a run keeps the history of a tokenizer it reused and drops that of one it replaced."""

from __future__ import annotations

from pathlib import Path

from train.model_card import publish


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_publishing_keeps_the_logs_of_a_reused_tokenizer_only(tmp_path):
    out, run = tmp_path / "assets", tmp_path / "run"
    # what was published before: two tokenizers with their training history
    _write(out / "text_tokenizer" / "tokenizer.json", "bpe")
    _write(out / "text_tokenizer" / "length_stats.json", "stats")
    _write(out / "image_tokenizer" / "val_metrics.json", "routed metrics")
    _write(out / "image_tokenizer" / "grey" / "diffusion_pytorch_model.safetensors", "vq weights")
    _write(out / "image_tokenizer" / "grey" / "train_log.jsonl", "vq log")
    _write(out / "image_tokenizer" / "colour" / "centres.safetensors", "old centres")
    _write(out / "image_tokenizer" / "colour" / "notes.txt", "old colour notes")
    # the run reused the text tokenizer and the grey VQ byte for byte, but drew new colour codes
    _write(run / "medim" / "text_tokenizer" / "tokenizer.json", "bpe")
    _write(run / "medim" / "image_tokenizer" / "grey" / "diffusion_pytorch_model.safetensors", "vq weights")
    _write(run / "medim" / "image_tokenizer" / "colour" / "centres.safetensors", "new centres")
    _write(run / "medim" / "model.safetensors", "denoiser")

    publish(run, out)

    assert (out / "model.safetensors").read_text() == "denoiser"
    assert (out / "text_tokenizer" / "length_stats.json").read_text() == "stats"
    assert (out / "image_tokenizer" / "grey" / "train_log.jsonl").read_text() == "vq log"
    assert (out / "image_tokenizer" / "colour" / "centres.safetensors").read_text() == "new centres"
    # the replaced colour codes' notes and the metrics of the routed tokenizer as a whole no longer describe it
    assert not (out / "image_tokenizer" / "colour" / "notes.txt").exists()
    assert not (out / "image_tokenizer" / "val_metrics.json").exists()


def test_a_first_publication_copies_the_run_as_it_is(tmp_path):
    out, run = tmp_path / "assets", tmp_path / "run"
    _write(run / "medim" / "text_tokenizer" / "tokenizer.json", "bpe")
    publish(run, out)
    assert sorted(p.name for p in (out / "text_tokenizer").iterdir()) == ["tokenizer.json"]
