"""Train the default's next candidates on a GPU host that holds neither the corpus nor its images.

A GPU host needs only the token cache (the VQ codes and report ids the training loop reads), not the corpus: a
192,000-pair cache is 70 MB as arrays and 14 MB packed. On the build machine:

    python -m train.candidates cache runs/cache192 data.root=runs/corpus192 data.synthetic_n=192000
    python -m train.candidates pack runs/cache192 --corpus runs/corpus192 --out .candidates/pack
    python -m train.candidates reference .candidates/reference.npy

    python -m train.candidates subset runs/corpus192 --split val --pairs 400 --out .candidates/val400

then copy the repository with `.candidates/` to the GPU host (wheels of packages the host lacks go in
`.candidates/whl/`) and run `bash train/candidates.sh OUT_DIR` there: it checks the host's torch/transformers against the
reference logits, unpacks the cache, trains the candidates side by side, scores each on the validation pairs and
packs the weights into OUT_DIR. Nothing in the project needs a GPU; this is how one, when available, adds compute
to the chain (`--init-from assets/default` candidates keep it).
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import shutil
import sys
from pathlib import Path

import numpy as np

ARRAYS = ("image_codes", "text_ids", "prompt_lengths", "domains")
SPLITS = ("train", "val")


def build(out: Path, checkpoint: Path, config_name: str, overrides: list[str], threads: int) -> None:
    """Encode the configured corpus's train and val splits with ``checkpoint``'s tokenizers into out/{split}."""
    import torch

    from medim.tokenizers.image import load_image_tokenizer
    from medim.tokenizers.text import load_text_tokenizer
    from medim.vocab import VocabLayout
    from train.config import load_config
    from train.data import build_cache, ensure_corpus
    from train.stages.medim import build_model_config

    torch.set_num_threads(threads)
    config = load_config(config_name, overrides)
    text = load_text_tokenizer(checkpoint / "text_tokenizer")
    image = load_image_tokenizer(checkpoint / "image_tokenizer").eval()
    layout = VocabLayout.from_config(build_model_config(config, text, image))
    ensure_corpus(config)
    for split in (config.data.train_split, config.data.val_split):
        print(build_cache(config, split, text, image, layout, out / split), flush=True)


def pack(cache: Path, corpus: Path, out: Path, max_mb: float | None = None) -> dict[str, int]:
    """LZMA archives of cache/{train,val} (report ids stored as int16) and the corpus recipe, in ``out``. With
    ``max_mb``, the training rows are cut to a prefix (in corpus order) that fits. Returns the rows per split."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {}

    def write(split: str, limit: int | None = None) -> int:
        arrays = {name: np.load(cache / split / f"{name}.npy")[:limit] for name in ARRAYS}
        if arrays["text_ids"].max(initial=0) >= 2**15:
            raise ValueError("report ids above 32767 do not fit the packed int16")
        arrays["text_ids"] = arrays["text_ids"].astype(np.int16)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        (out / f"{split}.npz.xz").write_bytes(
            lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME)
        )
        meta = json.loads((cache / split / "meta.json").read_text())
        meta["pairs"] = rows[split] = len(arrays["domains"])
        (out / f"{split}_meta.json").write_text(json.dumps(meta))
        return (out / f"{split}.npz.xz").stat().st_size

    sizes = {split: write(split) for split in SPLITS}
    if max_mb is not None and sum(sizes.values()) > max_mb * 1e6:
        room = max_mb * 1e6 - sizes["val"]
        if room <= 0:
            raise ValueError(f"the validation archive alone is {sizes['val'] / 1e6:.1f} MB > {max_mb} MB")
        # an even prefix: the synthetic corpus alternates the two domains
        write("train", int(rows["train"] * room / sizes["train"] * 0.98) // 2 * 2)
    shutil.copy(corpus / "corpus.json", out / "corpus.json")
    return rows


def unpack(packed: Path, cache: Path, corpus: Path) -> None:
    """Rebuild cache/{train,val} from ``pack``'s archives, and a corpus root holding only the recipe file the
    training loop checks (its pairs are read from the cache). A split already in ``cache`` is left as it is."""
    for split in SPLITS:
        if not (cache / split / "meta.json").is_file():
            (cache / split).mkdir(parents=True, exist_ok=True)
            data = lzma.decompress((packed / f"{split}.npz.xz").read_bytes())
            with np.load(io.BytesIO(data)) as archive:
                for name in archive.files:
                    array = archive[name].astype(np.int32) if name == "text_ids" else archive[name]
                    np.save(cache / split / f"{name}.npy", array)
            shutil.copy(packed / f"{split}_meta.json", cache / split / "meta.json")
        (corpus / split).mkdir(parents=True, exist_ok=True)
        (corpus / split / "metadata.jsonl").touch()
    if not (corpus / "corpus.json").is_file():
        shutil.copy(packed / "corpus.json", corpus / "corpus.json")


def subset(corpus: Path, split: str, pairs: int, out: Path) -> int:
    """Copy the first ``pairs`` pairs of ``corpus/split`` (metadata and images) into ``out/split``, with the
    corpus recipe beside it; returns how many were copied."""
    lines = (corpus / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[:pairs]
    (out / split / "images").mkdir(parents=True, exist_ok=True)
    for line in lines:
        image = json.loads(line)["image"]
        (out / split / image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / split / image, out / split / image)
    (out / split / "metadata.jsonl").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    if (corpus / "corpus.json").is_file():
        shutil.copy(corpus / "corpus.json", out / "corpus.json")
    return len(lines)


def reference_logits(checkpoint: Path, device: str = "cpu") -> np.ndarray:
    """The denoiser's fp32 logits on a fixed random sequence at two timesteps (every 7th position)."""
    import torch

    from medim.pipeline import MeDiMPipeline

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = MeDiMPipeline.from_pretrained(checkpoint, device=device).model.float().eval()
    layout = model.layout
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(
        0, layout.text_vocab_size + layout.codebook_size, (2, layout.seq_len), generator=generator
    )
    with torch.no_grad():
        logits = model(ids.to(device), torch.tensor([0.3, 0.8], device=device)).float().cpu()
    return logits[:, ::7].numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.candidates", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="encode a corpus into a token cache")
    cache.add_argument("out", type=Path)
    cache.add_argument(
        "overrides", nargs="*", help="train config key=value (data.root=..., data.synthetic_n=...)"
    )
    cache.add_argument("--config", default="demo-cpu")
    cache.add_argument("--checkpoint", type=Path, default=Path("assets/default"), help="whose tokenizers")
    cache.add_argument("--threads", type=int, default=2)
    packing = commands.add_parser("pack", help="compress a token cache for the trip")
    packing.add_argument("cache", type=Path)
    packing.add_argument("--corpus", type=Path, required=True, help="the corpus root the cache encodes")
    packing.add_argument("--out", type=Path, required=True)
    packing.add_argument("--max-mb", type=float, help="cut the training rows to fit this many MB")
    unpacking = commands.add_parser("unpack", help="rebuild a token cache from its pack")
    unpacking.add_argument("pack", type=Path)
    unpacking.add_argument("--cache", type=Path, required=True)
    unpacking.add_argument("--corpus", type=Path, required=True)
    part = commands.add_parser("subset", help="copy the first pairs of a split (the candidates' scoring set)")
    part.add_argument("corpus", type=Path)
    part.add_argument("--split", default="val")
    part.add_argument("--pairs", type=int, default=400)
    part.add_argument("--out", type=Path, required=True)
    reference = commands.add_parser("reference", help="write the default's reference logits (CPU, fp32)")
    reference.add_argument("out", type=Path)
    reference.add_argument("--checkpoint", type=Path, default=Path("assets/default"))
    check = commands.add_parser("check", help="compare this host's logits with the reference")
    check.add_argument("reference", type=Path)
    check.add_argument("--checkpoint", type=Path, default=Path("assets/default"))
    check.add_argument("--device", default="cpu")
    check.add_argument("--tolerance", type=float, default=2e-2, help="max |logit difference| accepted")
    args = parser.parse_args(argv)
    if args.command == "cache":
        build(args.out, args.checkpoint, args.config, args.overrides, args.threads)
    elif args.command == "pack":
        rows = pack(args.cache, args.corpus, args.out, args.max_mb)
        sizes = {p.name: f"{p.stat().st_size / 1e6:.1f} MB" for p in sorted(args.out.glob("*.xz"))}
        print(f"packed {rows} into {args.out}: {sizes}")
    elif args.command == "unpack":
        unpack(args.pack, args.cache, args.corpus)
        print(f"unpacked {args.pack} into {args.cache} (corpus recipe in {args.corpus})")
    elif args.command == "subset":
        print(f"copied {subset(args.corpus, args.split, args.pairs, args.out)} pairs into {args.out}")
    elif args.command == "reference":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, reference_logits(args.checkpoint))
        print(f"wrote {args.out}")
    else:
        expected = np.load(args.reference)
        difference = float(np.abs(reference_logits(args.checkpoint, args.device) - expected).max())
        ok = difference <= args.tolerance
        print(
            f"max |logit difference| on {args.device} vs the reference: {difference:.2e} ({'ok' if ok else 'FAILED'})"
        )
        return 0 if ok else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
