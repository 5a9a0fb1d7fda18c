"""Training package: each stage on a tiny synthetic corpus, exact resume, and a 2-process accelerate run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medim.config import MeDiMConfig
from train.__main__ import main
from train.config import load_config
from train.logs import CsvLog

ROOT = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A run directory whose corpus, text tokenizer and VQ tokenizer stages have completed."""
    out = tmp_path_factory.mktemp("run")
    assert main(["tokenizer", "--config", "tiny", f"output_dir={out}"]) == 0
    assert main(["vq", "--config", "tiny", f"output_dir={out}"]) == 0
    return out


def _copy_prepared(prepared: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("corpus", "text_tokenizer", "image_tokenizer"):
        shutil.copytree(prepared / name, target / name)
    return target


def test_tokenizer_and_vq_stages_write_loadable_directories(prepared):
    from medim.tokenizers.image import VQImageTokenizer
    from medim.tokenizers.text import load_text_tokenizer

    tokenizer = load_text_tokenizer(prepared / "text_tokenizer")
    assert tokenizer.pad_token is not None and len(tokenizer) <= 300
    vq = VQImageTokenizer.from_pretrained(prepared / "image_tokenizer")
    assert vq.image_size == 16 and vq.codebook_size == 32
    assert (prepared / "image_tokenizer" / "val_metrics.json").is_file()
    assert (prepared / "logs" / "vq.jsonl").read_text().strip()


def test_vq_stage_trains_only_the_decoder_of_an_existing_tokenizer(prepared, tmp_path):
    from medim.tokenizers.image import VQImageTokenizer

    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(prepared / "corpus", out / "corpus")
    source = prepared / "image_tokenizer"
    args = ["vq", "--config", "tiny", f"output_dir={out}", f"vq.path={source}", "vq.decoder_steps=3"]
    assert main(args) == 0
    before = VQImageTokenizer.from_pretrained(source)
    after = VQImageTokenizer.from_pretrained(out / "image_tokenizer")
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(after.encode(images), before.encode(images))
    decoder_changed = [
        not torch.equal(a, b)
        for a, b in zip(after.vq_model.decoder.parameters(), before.vq_model.decoder.parameters())
    ]
    assert any(decoder_changed)
    metrics = json.loads((out / "image_tokenizer" / "val_metrics.json").read_text())
    assert metrics["decoder_steps"] == 3 and "psnr_before_decoder_steps" in metrics
    records = [
        json.loads(line) for line in (out / "image_tokenizer" / "decoder_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [3]


def test_medim_stage_trains_logs_and_exports_a_pipeline(prepared, tmp_path):
    from medim.pipeline import MeDiMPipeline

    out = _copy_prepared(prepared, tmp_path / "run")
    assert main(["medim", "--config", "tiny", f"output_dir={out}"]) == 0
    rows = CsvLog.read(out / "logs" / "train.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert len(CsvLog.read(out / "logs" / "val.csv")) == 2
    assert (out / "logs" / "loss_curve.png").stat().st_size > 1000
    saved = load_config(out / "train_config.yaml")
    assert saved.optim.max_steps == 6  # the config travels with the checkpoint
    pipe = MeDiMPipeline.from_pretrained(out / "medim", device="cpu")
    assert pipe.info["kind"] == "trained" and pipe.info["steps"] == 6
    result = pipe.generate_image("FINDINGS: normal heart.", steps=2)
    assert result.images[0].size == (16, 16)


def test_resume_after_interruption_matches_an_uninterrupted_run(prepared, tmp_path):
    straight = _copy_prepared(prepared, tmp_path / "straight")
    assert main(["medim", "--config", "tiny", f"output_dir={straight}"]) == 0

    interrupted = _copy_prepared(prepared, tmp_path / "interrupted")
    assert main(["medim", "--config", "tiny", f"output_dir={interrupted}"]) == 0
    # simulate a crash after step 3: only the step-3 checkpoint survives
    shutil.rmtree(interrupted / "checkpoints" / "step_0000006")
    shutil.rmtree(interrupted / "medim")
    assert main(["medim", "--config", "tiny", f"output_dir={interrupted}", "--resume", "latest"]) == 0

    a = load_file(straight / "medim" / "model.safetensors")
    b = load_file(interrupted / "medim" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    # and the resumed run really trained from step 3: it logged steps 4-6 and its weights left the step-3 state
    steps = [r["step"] for r in CsvLog.read(interrupted / "logs" / "train.csv")]
    assert steps[-3:] == [4, 5, 6]
    at_step_3 = load_file(interrupted / "checkpoints" / "step_0000003" / "model.safetensors")
    assert any(not torch.allclose(b[key], at_step_3[key]) for key in at_step_3)


def test_a_run_resumed_after_its_clock_budget_is_spent_exports_without_training_more(prepared, tmp_path):
    """A run stopped by the clock that crashed before exporting is exported by `--resume latest`, unchanged."""
    from medim.pipeline import MeDiMPipeline

    out = _copy_prepared(prepared, tmp_path / "clock")
    overrides = [f"output_dir={out}", "optim.max_steps=100000", "optim.max_minutes=0.01"]
    assert main(["medim", "--config", "tiny", *overrides]) == 0
    trained = [r["step"] for r in CsvLog.read(out / "logs" / "train.csv")]
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    last = checkpoints[-1]
    steps = int(last.split("_")[1])
    assert 0 < steps < 100000
    weights = load_file(out / "checkpoints" / last / "model.safetensors")
    shutil.rmtree(out / "medim")  # crashed between the last checkpoint and the export

    assert main(["medim", "--config", "tiny", *overrides, "--resume", "latest"]) == 0
    assert [r["step"] for r in CsvLog.read(out / "logs" / "train.csv")] == trained
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints
    assert MeDiMPipeline.from_pretrained(out / "medim", device="cpu").info["steps"] == steps
    after = load_file(out / "checkpoints" / last / "model.safetensors")
    for key in weights:
        torch.testing.assert_close(after[key], weights[key], rtol=0, atol=0, msg=key)


def test_a_budget_that_runs_out_during_a_periodic_save_ends_the_run_saved_as_spent(
    prepared, tmp_path, monkeypatch
):
    """The clock crossing the budget while a periodic checkpoint is written (a slow disk) must not end the run
    on a checkpoint that still reads "budget left": resumed, that run would train past its budget."""
    import types

    import train.stages.medim as stage

    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(stage, "time", types.SimpleNamespace(time=lambda: clock.now))
    save = stage.save_checkpoint

    def slow_save(accelerator, out, step, keep):
        save(accelerator, out, step, keep)
        if step == 3:
            clock.now += 1000.0  # the budget (60 s) runs out while the step-3 checkpoint is written

    monkeypatch.setattr(stage, "save_checkpoint", slow_save)
    out = _copy_prepared(prepared, tmp_path / "slow")
    overrides = [f"output_dir={out}", "optim.max_steps=12", "optim.max_minutes=1"]
    assert main(["medim", "--config", "tiny", *overrides]) == 0
    # one more step runs after the slow save; it sees the spent budget and is saved as the last checkpoint
    assert [r["step"] for r in CsvLog.read(out / "logs" / "train.csv")] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step_0000004"
    shutil.rmtree(out / "medim")
    assert main(["medim", "--config", "tiny", *overrides, "--resume", "latest"]) == 0
    assert [r["step"] for r in CsvLog.read(out / "logs" / "train.csv")] == [1, 2, 3, 4]


def test_two_process_cpu_run_through_accelerate_launch(prepared, tmp_path):
    out = _copy_prepared(prepared, tmp_path / "ddp")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "train/configs/accelerate/cpu-2proc.yaml"),
        "-m",
        "train",
        "medim",
        "--config",
        "tiny",
        f"output_dir={out}",
        "optim.max_steps=3",
        "eval.save_every=3",
    ]
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes agree on the final weights" in done.stdout + done.stderr
    assert (out / "medim" / "model.safetensors").is_file()


def test_bad_config_is_a_clear_error(capsys):
    assert main(["medim", "--config", "tiny", "optim.lr=-1"]) == 2
    assert "lr=-1" in capsys.readouterr().err
    assert main(["medim", "--config", "no-such-preset"]) == 2


def test_word_values_stay_strings_in_overrides_and_files(tmp_path):
    # YAML 1.1 would read `off` as False; the ablation switch `timestep_conditioning=off` must stay a choice
    config = load_config("tiny", ["model.timestep_conditioning=off", "model.causal_attention=true"])
    assert config.model.timestep_conditioning == "off" and config.model.causal_attention is True
    path = tmp_path / "ablation.yaml"
    path.write_text("model:\n  timestep_conditioning: off\n  causal_attention: false\n")
    from_file = load_config(path)
    assert from_file.model.timestep_conditioning == "off" and from_file.model.causal_attention is False


def test_warm_start_continues_from_the_published_weights_and_records_the_chain(prepared, tmp_path):
    from medim.pipeline import MeDiMPipeline

    source = _copy_prepared(prepared, tmp_path / "source")
    assert main(["medim", "--config", "tiny", f"output_dir={source}"]) == 0
    published = source / "medim"
    # a fresh directory with no tokenizer stages: the warm start brings the source's tokenizers
    follow = tmp_path / "follow"
    shutil.copytree(prepared / "corpus", follow / "corpus")
    args = ["medim", "--config", "tiny", f"output_dir={follow}", "--init-from", str(published)]
    assert main([*args, "optim.max_steps=1", "optim.lr=1e-12", "optim.ema_decay=0.0"]) == 0
    before = load_file(published / "model.safetensors")
    after = load_file(follow / "medim" / "model.safetensors")
    for key in before:  # one step at a vanishing learning rate: still the published weights
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-6, msg=key)
    fresh = _copy_prepared(prepared, tmp_path / "fresh")
    assert (
        main(["medim", "--config", "tiny", f"output_dir={fresh}", "optim.max_steps=1", "optim.lr=1e-12"]) == 0
    )
    scratch = load_file(fresh / "medim" / "model.safetensors")
    assert any(not torch.allclose(scratch[k], before[k]) for k in before)  # not what a fresh init gives
    pipe = MeDiMPipeline.from_pretrained(follow / "medim", device="cpu")
    chain = pipe.info["runs"]
    assert [run["steps"] for run in chain] == [6, 1]
    assert chain[1]["init_from"] == str(published) and "CPU" in chain[1]["device"]
    # the warm run's batches and masks follow on from the source's six steps instead of replaying them
    assert chain[0]["stream_offset"] == 0 and chain[1]["stream_offset"] == 6


def test_word_dropout_run_records_its_training_ids_and_reads_the_rest_as_unknown(prepared, tmp_path):
    """unknown_word_rate > 0: the export lists the report ids of the training cache (with the source's, on a warm
    start), never writes <unk>, and its pipeline reads every other text id as <unk>."""
    import numpy as np

    from medim.pipeline import MeDiMPipeline
    from medim.vocab import TEXT

    out = _copy_prepared(prepared, tmp_path / "run")
    assert main(["medim", "--config", "tiny", f"output_dir={out}", "diffusion.unknown_word_rate=0.2"]) == 0
    pipe = MeDiMPipeline.from_pretrained(out / "medim", device="cpu")
    cache_ids = np.unique(np.load(out / "cache" / "train" / "text_ids.npy"))
    expected = {int(i) for i in cache_ids if i < pipe.layout.text_vocab_size}
    assert pipe.trained_text_ids == expected
    unknown = pipe.text_tokenizer.unk_token_id
    assert unknown not in expected and unknown in pipe.config.suppressed_text_ids
    assert not pipe.layout.allowed_tokens[TEXT, unknown]  # the sampler never writes it
    assert pipe.reads_unknown_words and pipe.diffusion_config.unknown_word_rate == 0.2
    # a warm start keeps the source's ids even when its own cache holds fewer
    source_ids = json.loads((out / "medim" / "trained_text_ids.json").read_text())["ids"]
    (out / "medim" / "trained_text_ids.json").write_text(json.dumps({"ids": [*source_ids, unknown + 1000]}))
    follow = tmp_path / "follow"
    shutil.copytree(prepared / "corpus", follow / "corpus")
    args = ["medim", "--config", "tiny", f"output_dir={follow}", "--init-from", str(out / "medim")]
    assert main([*args, "optim.max_steps=1"]) == 0
    followed = json.loads((follow / "medim" / "trained_text_ids.json").read_text())["ids"]
    assert set(followed) == expected | {unknown + 1000}


def _new_codes_run(prepared: Path, tmp_path: Path, name: str) -> tuple[Path, Path, list[str]]:
    """A one-step source pipeline, and a run directory (corpus and text tokenizer copied) set to warm-start from it
    with image codes of its own: (the source's pipeline, the run, the run's overrides)."""
    source = _copy_prepared(prepared, tmp_path / "source")
    assert main(["medim", "--config", "tiny", f"output_dir={source}", "optim.max_steps=1"]) == 0
    published = source / "medim"
    run = tmp_path / name
    shutil.copytree(prepared / "corpus", run / "corpus")
    shutil.copytree(prepared / "text_tokenizer", run / "text_tokenizer")
    return published, run, [f"output_dir={run}", f"model.init_from={published}", "model.new_image_codes=true"]


def test_warm_start_with_new_image_codes_keeps_all_but_the_image_rows(prepared, tmp_path):
    """A finer image grid (its own vq stage) warm-started from a checkpoint on the old grid: the body, AdaLN,
    text and special rows are the source's; the image-code rows are fresh; the chain continues."""
    from medim.pipeline import MeDiMPipeline
    from medim.vocab import VocabLayout

    published, finer, warm = _new_codes_run(prepared, tmp_path, "finer")
    grid = ["vq.architecture.block_out_channels=[8, 8]", "vq.architecture.num_vq_embeddings=24"]
    assert main(["vq", "--config", "tiny", *warm, *grid]) == 0
    # without the switch the grid mismatch is refused, and the error says which switch allows it
    with pytest.raises(ValueError, match="new_image_codes"):
        main(["medim", "--config", "tiny", f"output_dir={finer}", f"model.init_from={published}"])
    train_args = ["optim.max_steps=1", "optim.lr=1e-12", "optim.ema_decay=0.0"]
    assert main(["medim", "--config", "tiny", *warm, *train_args]) == 0
    pipe = MeDiMPipeline.from_pretrained(finer / "medim", device="cpu")
    source_pipe = MeDiMPipeline.from_pretrained(published, device="cpu")
    assert pipe.config.image_grid == (8, 8) and source_pipe.config.image_grid == (4, 4)
    assert pipe.config.codebook_size == 24
    before, after = (
        load_file(published / "model.safetensors"),
        load_file(finer / "medim" / "model.safetensors"),
    )
    old, new = VocabLayout.from_config(source_pipe.config), VocabLayout.from_config(pipe.config)
    for key in before:
        if key.endswith(("embed_tokens.weight", "lm_head.weight")):
            text = old.text_vocab_size
            torch.testing.assert_close(after[key][:text], before[key][:text], rtol=0, atol=1e-6)
            for role in ("boi_id", "eoi_id", "pad_id", "mask_id"):
                torch.testing.assert_close(
                    after[key][getattr(new, role)], before[key][getattr(old, role)], rtol=0, atol=1e-6
                )
            assert after[key].shape[0] == text + 24 + 4
        else:
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-6, msg=key)
    assert [run["steps"] for run in pipe.info["runs"]] == [1, 1]

    # model.image_code_init=codebook: codes that draw alike start with alike rows (identical vectors share the
    # projected half of their rows; opposite vectors get opposite halves), and the rest is loaded as before
    from train.stages.medim import warm_start

    vectors = torch.randn(24, 12, generator=torch.Generator().manual_seed(1))
    vectors[8:16] = vectors[:8]  # codes j and j + 8 draw the same patch, codes j and j + 16 opposite ones
    vectors[16:] = -vectors[:8]
    warm_start(pipe.model, published, new_image_codes=True, code_vectors=vectors)
    table = pipe.model.state_dict()["backbone.model.embed_tokens.weight"]
    rows = table[new.image_offset : new.image_offset + 24]
    rows = torch.nn.functional.normalize(rows - rows.mean(), dim=1)
    cosine = rows @ rows.T
    twins, opposites = cosine[range(8), range(8, 16)].mean(), cosine[range(8), range(16, 24)].mean()
    strangers = torch.stack([cosine[i, j] for i in range(8) for j in range(8) if i != j]).mean()
    assert twins > 0.3 and opposites < -0.3 and abs(strangers) < 0.15, (twins, opposites, strangers)
    torch.testing.assert_close(
        table[: old.text_vocab_size], before["backbone.model.embed_tokens.weight"][: old.text_vocab_size]
    )
    with pytest.raises(ValueError, match="rows for 24 new codes"):
        warm_start(pipe.model, published, new_image_codes=True, code_vectors=vectors[:5])
    with pytest.raises(ValueError, match="new_image_codes=true"):
        load_config("tiny", ["model.image_code_init=codebook"])


def test_routed_tokenizer_warm_start_keeps_the_source_codes_rows(prepared, tmp_path):
    """vq.kind=routed keeps the source's VQ for grey images and fits patch k-means for colour ones; the warm start
    then loads the source's rows for the grey codes (ids unchanged) and draws only the colour codes' rows."""
    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.routed import RoutedImageTokenizer
    from medim.vocab import VocabLayout
    from train.stages.medim import shared_code_prefix

    published, routed_run, warm = _new_codes_run(prepared, tmp_path, "routed")
    kmeans = ["vq.kind=routed", "vq.kmeans_patch=4", "vq.kmeans_codes=5", "vq.kmeans_quantile_weight=8"]
    assert main(["vq", "--config", "tiny", *warm, *kmeans, "vq.kmeans_draw=exemplar"]) == 0
    tokenizer = load_image_tokenizer(routed_run / "image_tokenizer")
    assert isinstance(tokenizer, RoutedImageTokenizer) and tokenizer.codebook_size == 32 + 5
    assert shared_code_prefix(tokenizer, published / "image_tokenizer") == 32
    assert shared_code_prefix(tokenizer, routed_run / "image_tokenizer") == 0  # a routed source is no VQ
    train_args = [
        "optim.max_steps=1",
        "optim.lr=1e-12",
        "optim.ema_decay=0.0",
        "model.image_code_init=codebook",
    ]
    assert main(["medim", "--config", "tiny", *warm, *train_args]) == 0
    before = load_file(published / "model.safetensors")
    after = load_file(routed_run / "medim" / "model.safetensors")
    old = VocabLayout.from_config(MeDiMConfig.load(published / "medim_config.json"))
    new = VocabLayout.from_config(MeDiMConfig.load(routed_run / "medim" / "medim_config.json"))
    for key in ("backbone.model.embed_tokens.weight", "backbone.lm_head.weight"):
        if key not in before:
            continue
        kept = slice(old.image_offset, old.image_offset + 32)
        torch.testing.assert_close(
            after[key][new.image_offset : new.image_offset + 32], before[key][kept], rtol=0, atol=1e-6
        )
        fresh = after[key][new.image_offset + 32 : new.image_offset + 37]
        assert not any(torch.allclose(row, old_row) for row in fresh for old_row in before[key][kept])


def test_grow_depth_starts_a_deeper_model_as_the_source_and_continues_its_chain(prepared, tmp_path):
    """model.grow_depth: a 4-layer model warm-started from a trained 2-layer one computes the source's logits
    exactly at step 0 (the inserted copies have zero output projections), then trains all its layers."""
    import dataclasses

    from medim.modeling import MeDiMModel
    from medim.pipeline import MeDiMPipeline
    from train.stages.medim import warm_start

    source = _copy_prepared(prepared, tmp_path / "source")
    assert main(["medim", "--config", "tiny", f"output_dir={source}"]) == 0
    published = source / "medim"
    source_pipe = MeDiMPipeline.from_pretrained(published, device="cpu")
    deeper = dataclasses.replace(
        source_pipe.config, backbone={**source_pipe.config.backbone, "num_hidden_layers": 4}
    )
    grown = MeDiMModel(deeper).eval()
    with pytest.raises(ValueError, match="grow_depth=true"):
        warm_start(grown, published)
    warm_start(grown, published, grow_depth=True)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(
        0, source_pipe.layout.vocab_size, (3, source_pipe.layout.seq_len), generator=generator
    )
    t = torch.rand(3, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(grown(ids, t), source_pipe.model(ids, t), rtol=1e-5, atol=1e-5)
    weights = grown.state_dict()
    trained = load_file(published / "model.safetensors")
    for name in ("self_attn.q_proj.weight", "mlp.up_proj.weight", "self_attn.o_proj.weight"):
        # source layer i sits at 2i, its copy at 2i + 1: the copy's inputs are the source's, its outputs zero
        for i in range(2):
            torch.testing.assert_close(
                weights[f"backbone.model.layers.{2 * i}.{name}"], trained[f"backbone.model.layers.{i}.{name}"]
            )
        copy = weights[f"backbone.model.layers.3.{name}"]
        if name.endswith("o_proj.weight"):
            assert not copy.any()
        else:
            torch.testing.assert_close(copy, trained[f"backbone.model.layers.1.{name}"])
    torch.testing.assert_close(weights["adaln.3.linear.weight"], trained["adaln.1.linear.weight"])
    assert not weights["backbone.model.layers.1.mlp.down_proj.weight"].any()
    with pytest.raises(ValueError, match="same backbone"):
        wider = dataclasses.replace(
            deeper,
            backbone={**deeper.backbone, "intermediate_size": 2 * deeper.backbone["intermediate_size"]},
        )
        warm_start(MeDiMModel(wider), published, grow_depth=True)

    # through the training command: the grown run trains every layer (the copies' outputs leave zero) and
    # records the chain
    follow = tmp_path / "follow"
    shutil.copytree(prepared / "corpus", follow / "corpus")
    args = ["medim", "--config", "tiny", f"output_dir={follow}", "--init-from", str(published)]
    assert (
        main([*args, "model.backbone.num_hidden_layers=4", "model.grow_depth=true", "optim.max_steps=2"]) == 0
    )
    after = load_file(follow / "medim" / "model.safetensors")
    assert after["backbone.model.layers.3.self_attn.o_proj.weight"].any()
    assert after["backbone.model.layers.1.mlp.down_proj.weight"].any()
    pipe = MeDiMPipeline.from_pretrained(follow / "medim", device="cpu")
    assert pipe.config.backbone["num_hidden_layers"] == 4
    assert [run["steps"] for run in pipe.info["runs"]] == [6, 2]


def test_patch_kmeans_tokenizer_stage_trains_a_denoiser_on_its_grid(prepared, tmp_path):
    from medim.pipeline import MeDiMPipeline
    from medim.tokenizers.patch_kmeans import PatchKMeansTokenizer

    out = tmp_path / "kmeans"
    shutil.copytree(prepared / "corpus", out / "corpus")
    shutil.copytree(prepared / "text_tokenizer", out / "text_tokenizer")
    kmeans = ["vq.kind=patch_kmeans", "vq.kmeans_patch=2", "vq.kmeans_codes=16", "vq.kmeans_iterations=2"]
    assert main(["vq", "--config", "tiny", f"output_dir={out}", *kmeans]) == 0
    metrics = json.loads((out / "image_tokenizer" / "val_metrics.json").read_text())
    assert metrics["psnr"] > 0 and 0 < metrics["codebook_usage"] <= 1
    assert main(["medim", "--config", "tiny", f"output_dir={out}", "optim.max_steps=1"]) == 0
    pipe = MeDiMPipeline.from_pretrained(out / "medim", device="cpu")
    assert isinstance(pipe.image_tokenizer, PatchKMeansTokenizer)
    assert pipe.config.image_grid == (8, 8) and pipe.config.codebook_size == 16
    with pytest.raises(ValueError, match="decoder"):
        load_config("tiny", ["vq.kind=patch_kmeans", "vq.decoder_steps=5"])


def test_stream_offset_follows_the_source_chain_unless_set():
    from train.stages.medim import data_stream_offset

    source_info = {"runs": [{"steps": 1073}, {"steps": 1805}]}
    assert data_stream_offset(load_config("tiny"), {}) == 0
    assert data_stream_offset(load_config("tiny"), source_info) == 2878
    assert data_stream_offset(load_config("tiny", ["data.stream_offset=5"]), source_info) == 5
    with pytest.raises(ValueError, match="stream_offset"):
        data_stream_offset(load_config("tiny", ["data.stream_offset=-1"]), source_info)


def test_warm_start_from_a_different_model_is_a_clear_error(prepared, tmp_path):
    source = _copy_prepared(prepared, tmp_path / "source")
    assert main(["medim", "--config", "tiny", f"output_dir={source}", "optim.max_steps=1"]) == 0
    other = _copy_prepared(prepared, tmp_path / "other")
    with pytest.raises(ValueError, match="backbone"):
        main(
            [
                "medim",
                "--config",
                "tiny",
                f"output_dir={other}",
                f"model.init_from={source / 'medim'}",
                "model.backbone.num_hidden_layers=3",
            ]
        )


def test_pretrain_then_adapt_starts_the_denoiser_from_the_causal_lm(prepared, tmp_path):
    """`all` with a pretrain budget: a causal LM is trained and exported, the medim stage starts from it (its
    backbone weights, fresh AdaLN-Zero) and both runs are in the exported chain."""
    from medim.config import MeDiMConfig
    from medim.pipeline import MeDiMPipeline

    out = _copy_prepared(prepared, tmp_path / "run")
    args = ["all", "--config", "tiny", f"output_dir={out}", "pretrain.max_steps=4", "optim.max_steps=1"]
    assert main([*args, "optim.lr=1e-12", "optim.ema_decay=0.0"]) == 0
    pretrained = MeDiMConfig.load(out / "pretrain" / "medim_config.json")
    assert pretrained.causal_attention is True and pretrained.timestep_conditioning == "off"
    rows = CsvLog.read(out / "pretrain_run" / "logs" / "train.csv")
    assert rows and all(float(row["loss"]) > 0 for row in rows)
    adapted = MeDiMPipeline.from_pretrained(out / "medim", device="cpu")
    assert adapted.config.causal_attention is False and adapted.config.timestep_conditioning == "adaln"
    chain = adapted.info["runs"]
    assert [run["objective"] for run in chain] == ["causal_lm", "diffusion"]
    assert [run["steps"] for run in chain] == [4, 1]
    source = load_file(out / "pretrain" / "model.safetensors")
    after = load_file(out / "medim" / "model.safetensors")
    for key in source:  # one step at a vanishing learning rate: still the pretrained backbone
        torch.testing.assert_close(after[key], source[key], rtol=0, atol=1e-6, msg=key)
    assert any(key.startswith("adaln.") for key in set(after) - set(source))


def test_adapting_a_causal_lm_keeps_its_function_at_step_zero(prepared, tmp_path):
    """AdaLN-Zero in the (1 + gate) form: the adapted model, with the causal mask kept, computes exactly what the
    pretrained causal LM computes, at every t (removing the mask is then the only change)."""
    from medim.modeling import MeDiMModel
    from medim.pipeline import MeDiMPipeline
    from train.stages.medim import warm_start

    out = _copy_prepared(prepared, tmp_path / "run")
    assert main(["pretrain", "--config", "tiny", f"output_dir={out}", "pretrain.max_steps=3"]) == 0
    source = MeDiMPipeline.from_pretrained(out / "pretrain", device="cpu").model.eval()
    config = dataclasses.replace(source.config, timestep_conditioning="adaln", adaln_gate="one_plus")
    adapted = MeDiMModel(config).eval()
    warm_start(adapted, out / "pretrain")
    torch.manual_seed(0)
    tokens = torch.randint(0, source.layout.vocab_size - 1, (3, source.layout.seq_len))
    with torch.no_grad():
        expected = source(tokens, torch.zeros(3))
        for t in (0.0, 0.3, 1.0):
            torch.testing.assert_close(adapted(tokens, torch.full((3,), t)), expected, rtol=0, atol=1e-5)


def test_the_medim_stage_of_a_pretrained_recipe_starts_from_its_pretraining(prepared, tmp_path):
    """Stages run one by one (or medim resumed): medim finds <output_dir>/pretrain and keeps it in the chain."""
    from medim.pipeline import MeDiMPipeline

    out = _copy_prepared(prepared, tmp_path / "run")
    budget = ["pretrain.max_steps=2", "optim.max_steps=1"]
    assert main(["pretrain", "--config", "tiny", f"output_dir={out}", *budget]) == 0
    assert main(["medim", "--config", "tiny", f"output_dir={out}", *budget]) == 0
    chain = MeDiMPipeline.from_pretrained(out / "medim", device="cpu").info["runs"]
    assert [run["objective"] for run in chain] == ["causal_lm", "diffusion"]
    assert chain[1]["init_from"] == str(out / "pretrain")


def test_pretrain_and_init_from_together_are_refused(prepared, tmp_path, capsys):
    out = _copy_prepared(prepared, tmp_path / "run")
    code = main(
        ["all", "--config", "tiny", f"output_dir={out}", "pretrain.max_steps=2", f"model.init_from={out}"]
    )
    assert code == 2 and "set one of them" in capsys.readouterr().err


def test_causal_lm_loss_scores_the_report_up_to_its_first_pad_and_every_image_code():
    from medim.diffusion import causal_lm_loss
    from medim.vocab import VocabLayout

    layout = VocabLayout(text_vocab_size=10, codebook_size=6, image_tokens=4, text_tokens=5)
    text = torch.tensor([[1, 2, layout.pad_id, layout.pad_id, layout.pad_id]])
    x0 = layout.pack(text, torch.tensor([[0, 1, 2, 3]]))
    logits = torch.randn(1, layout.seq_len, layout.vocab_size, generator=torch.Generator().manual_seed(0))
    loss, stats = causal_lm_loss(logits, x0, layout)
    # scored targets: 4 image codes (predicted from <boi> and codes 0-2) and report tokens 1, 2 and the first
    # pad (predicted from <eoi>, 1, 2); <eoi> itself and the two trailing pads are known
    log_probs = logits[:, :-1].clone()
    log_probs[..., layout.mask_id] = float("-inf")
    log_probs = log_probs.log_softmax(-1)[0]
    targets = x0[0, 1:]
    scored = [0, 1, 2, 3, 5, 6, 7]
    manual = -torch.stack([log_probs[p, targets[p]] for p in scored]).mean()
    torch.testing.assert_close(loss, manual)
    torch.testing.assert_close(
        stats["nll_image"], -torch.stack([log_probs[p, targets[p]] for p in scored[:4]]).mean()
    )
    changed = logits.clone()
    changed[0, 8:] += 100 * torch.randn(layout.seq_len - 8, layout.vocab_size)  # predicts the trailing pads
    torch.testing.assert_close(causal_lm_loss(changed, x0, layout)[0], loss)


def _paired_folder_copy(corpus: Path, target: Path) -> None:
    """The synthetic corpus rewritten in the paired-folder layout, one sub-folder per domain."""
    import json

    folders = {"chest_xray": "cxr", "pathology": "he"}
    for split in ("train", "val"):
        for line in (corpus / split / "metadata.jsonl").read_text().splitlines():
            row = json.loads(line)
            folder = target / folders[row["domain"]] / split
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus / split / row["image"], folder / f"{row['id']}.png")
            (folder / f"{row['id']}.txt").write_text(row["report"])


def test_the_paired_folder_layout_trains_with_its_domains_from_the_config(prepared, tmp_path):
    from medim.pipeline import MeDiMPipeline
    from train.data import load_split

    root = tmp_path / "pairs"
    _paired_folder_copy(prepared / "corpus", root)
    data = [
        "data.source=paired-folder",
        f"data.root={root}",
        "data.folder_domains={cxr: chest_xray, he: pathology}",
    ]
    config = load_config("tiny", data)
    train = load_split(config, "train")
    assert {entry.domain for entry in train.entries} == {"chest_xray", "pathology"}
    assert all(entry.id.split("/")[0] in ("cxr", "he") for entry in train.entries)
    out = tmp_path / "run"
    assert (
        main(["all", "--config", "tiny", f"output_dir={out}", *data, "vq.steps=2", "optim.max_steps=2"]) == 0
    )
    assert MeDiMPipeline.from_pretrained(out / "medim", device="cpu").info["steps"] == 2
    single = load_config(
        "tiny", ["data.source=paired-folder", f"data.root={root / 'cxr'}", "data.domain=chest_xray"]
    )
    assert {entry.domain for entry in load_split(single, "train").entries} == {"chest_xray"}
    with pytest.raises(ValueError, match="needs the pairs' domain"):
        load_config("tiny", ["data.source=paired-folder", f"data.root={root}"])


def test_clock_schedule_anneals_by_the_time_budget_whatever_the_step_count():
    from train.stages.medim import clock_lr_factor

    config = load_config(
        "tiny",
        [
            "optim.max_steps=100000",
            "optim.warmup_steps=10",
            "optim.max_minutes=1",
            "optim.schedule_by_clock=true",
        ],
    )
    spent = {"fraction": 0.0}
    factor = clock_lr_factor(config, lambda: spent["fraction"])
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)  # warm-up by steps
    assert factor(20) == pytest.approx(1.0, abs=1e-6)  # no time spent, few steps: peak
    spent["fraction"] = 0.5
    assert factor(20) == pytest.approx(0.5)  # half the budget: half-way down the cosine
    spent["fraction"] = 1.2
    assert factor(20) == pytest.approx(0.0)
    linear = clock_lr_factor(
        load_config("tiny", ["optim.lr_schedule=linear", "optim.warmup_steps=0"]), lambda: 0.25
    )
    assert linear(1) == pytest.approx(0.75)


def test_a_larger_synthetic_corpus_adds_training_pairs_and_keeps_validation_and_test(tmp_path):
    from train.data import ensure_corpus

    def corpus(name, n, fractions):
        config = load_config(
            "tiny",
            [
                f"data.root={tmp_path / name}",
                f"data.synthetic_n={n}",
                f"data.synthetic_split_fractions={fractions}",
            ],
        )
        return ensure_corpus(config)

    small = corpus("small", 20, "[0.6, 0.2, 0.2]")
    large = corpus("large", 40, "[0.8, 0.1, 0.1]")
    lines = lambda root, split: (root / split / "metadata.jsonl").read_text().splitlines()  # noqa: E731
    assert len(lines(large, "train")) == 32 and len(lines(small, "train")) == 12
    assert lines(large, "train")[:12] == lines(small, "train")
    for split in ("val", "test"):
        assert lines(large, split) == lines(small, split)  # 4 pairs each: the same pairs, byte for byte
    with pytest.raises(ValueError, match="split_fractions"):
        load_config("tiny", ["data.synthetic_split_fractions=[0.9, 0.2, 0.1]"])


def test_an_existing_corpus_the_config_does_not_describe_is_refused(tmp_path):
    """The saved train_config must name the corpus a run read: reusing a 40-pair corpus under a config that says
    20 pairs is an error naming both, and the matching config reuses it without writing anything."""
    from train.data import corpus_overrides, ensure_corpus

    def config(n):
        return load_config("tiny", [f"data.root={tmp_path / 'corpus'}", f"data.synthetic_n={n}"])

    root = ensure_corpus(config(40))
    written = (root / "train" / "metadata.jsonl").stat().st_mtime_ns
    assert ensure_corpus(config(40)) == root
    with pytest.raises(ValueError, match=r"data\.synthetic_n=20 but the corpus has 40"):
        ensure_corpus(config(20))
    assert (root / "train" / "metadata.jsonl").stat().st_mtime_ns == written
    described = load_config("tiny", [f"data.root={root}", "data.synthetic_n=20", *corpus_overrides(root)])
    assert described.data.synthetic_n == 40 and ensure_corpus(described) == root
