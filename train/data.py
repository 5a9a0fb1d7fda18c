"""Training data: the corpus (synthetic or a real dataset adapter), the pre-tokenised cache and batch sampling.

The cache turns every image into VQ ids and every report into text ids once, stored as .npy files that are
memory-mapped during training, so a training step never runs the VQ encoder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from train.config import TrainConfig

SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def corpus_root(config: TrainConfig) -> Path:
    if config.data.root:
        return Path(config.data.root)
    return config.out / "corpus"


def ensure_corpus(config: TrainConfig, is_main: bool = True) -> Path:
    """For synthetic data, write the corpus once (main process); otherwise check the root exists."""
    root = corpus_root(config)
    if config.data.source != "synthetic":
        if not root.exists():
            raise ValueError(f"data.root {root} does not exist")
        return root
    if (root / config.data.train_split / "metadata.jsonl").is_file():
        _check_corpus_matches(config, root)
        return root
    if is_main:
        from medim.data.synthetic import write_corpus

        write_corpus(
            root,
            config.data.synthetic_n,
            seed=config.data.synthetic_seed,
            image_size=config.data.image_size,
            split_fractions=tuple(config.data.synthetic_split_fractions),
            domains=tuple(config.data.domain_weights),
        )
    return root


# corpus.json field -> the data.* key that configures it
_RECIPE_KEYS = {
    "n": "synthetic_n",
    "seed": "synthetic_seed",
    "image_size": "image_size",
    "split_fractions": "synthetic_split_fractions",
}


def _recipe_settings(root: str | Path) -> dict[str, object]:
    """The data.* settings recorded in the recipe file of the synthetic corpus at ``root`` (its own folder only);
    empty when the folder keeps no recipe."""
    from medim.data.synthetic import CORPUS_RECIPE

    recipe_file = Path(root) / CORPUS_RECIPE
    if not recipe_file.is_file():
        return {}
    recipe = json.loads(recipe_file.read_text())
    return {key: recipe[field] for field, key in _RECIPE_KEYS.items() if field in recipe}


def _check_corpus_matches(config: TrainConfig, root: Path) -> None:
    """An existing synthetic corpus is reused only when the config describes it: the run's saved config must say
    which corpus it read (a corpus written before its recipe file was kept has nothing to compare and passes)."""
    from medim.data.synthetic import CORPUS_RECIPE

    def configured(key):
        value = getattr(config.data, key)
        return [float(f) for f in value] if key == "synthetic_split_fractions" else value

    mismatched = [
        f"data.{key}={configured(key)} but the corpus has {value}"
        for key, value in _recipe_settings(root).items()
        if configured(key) != value
    ]
    if mismatched:
        raise ValueError(
            f"data.root {root} holds a synthetic corpus the config does not describe: {'; '.join(mismatched)}. "
            f"Set these keys to the corpus's values (its {CORPUS_RECIPE} has the command that wrote it), "
            "or point data.root at a new folder to write the configured corpus there."
        )


def corpus_overrides(root: str | Path) -> list[str]:
    """The ``data.*`` overrides that describe an existing synthetic corpus (from its recipe file), for commands
    that train on a corpus someone else wrote; none when the folder keeps no recipe."""
    return [f"data.{key}={value}" for key, value in _recipe_settings(root).items()]


def load_split(config: TrainConfig, split: str):
    """A torch Dataset of PairRecord for a split of the configured source."""
    from medim.data.datasets import ManifestDataset, build_dataset, paired_folders

    root = corpus_root(config)
    if config.data.source in ("synthetic", "manifest"):
        manifest = root / split / "metadata.jsonl" if root.is_dir() else root
        return ManifestDataset(manifest)
    if config.data.source == "paired-folder":
        if config.data.folder_domains:
            return paired_folders(root, split, config.data.folder_domains)
        return build_dataset(config.data.source, root, split, domain=config.data.domain)
    return build_dataset(config.data.source, root, split)


def split_reports(dataset) -> list[str]:
    """All report texts of a dataset without decoding its images."""
    entries = getattr(dataset, "entries", None)
    if entries is not None and all(entry.report is not None for entry in entries):
        return [entry.report for entry in entries]
    return [dataset[index].report for index in range(len(dataset))]


def first_sentence(report: str) -> str:
    parts = SENTENCE_END.split(report.strip(), maxsplit=1)
    return parts[0] if parts else ""


@dataclass
class TokenCache:
    """Pre-tokenised split: image codes [N, n_img] (int16/int32), text ids [N, T], prompt lengths, domains."""

    image_codes: np.ndarray
    text_ids: np.ndarray
    prompt_lengths: np.ndarray
    domains: np.ndarray
    domain_names: list[str]

    def __len__(self) -> int:
        return len(self.text_ids)


def build_cache(
    config: TrainConfig, split: str, text_tokenizer, image_tokenizer, layout, out_dir: Path
) -> Path:
    """Encode a split once into out_dir/{image_codes,text_ids,prompt_lengths,domains}.npy (+ meta.json)."""
    from medim.data.preprocess import to_model_tensor

    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "meta.json").is_file():
        return out_dir
    dataset = load_split(config, split)
    n = len(dataset)
    if n == 0:
        raise ValueError(f"split {split!r} of {corpus_root(config)} is empty")
    code_dtype = np.int16 if image_tokenizer.codebook_size < 2**15 else np.int32
    codes = np.zeros((n, layout.image_tokens), dtype=code_dtype)
    text = np.zeros((n, layout.text_tokens), dtype=np.int32)
    prompts = np.zeros(n, dtype=np.int32)
    domains = np.zeros(n, dtype=np.int8)
    names = list(config.data.domain_weights)
    truncated = 0
    batch_images, batch_rows = [], []

    def flush():
        if not batch_images:
            return
        with torch.no_grad():
            ids = image_tokenizer.encode(torch.stack(batch_images).to(image_tokenizer.device)).cpu().numpy()
        codes[batch_rows] = ids
        batch_images.clear()
        batch_rows.clear()

    for row in tqdm(range(n), desc=f"tokenising {split}", unit="pair"):
        record = dataset[row]
        batch_images.append(to_model_tensor(record.image, config.data.image_size))
        batch_rows.append(row)
        if len(batch_images) == 64:
            flush()
        token_ids = text_tokenizer(record.report, add_special_tokens=False)["input_ids"]
        padded, was_truncated = layout.pad_text([token_ids])
        truncated += int(was_truncated[0])
        text[row] = padded[0].numpy()
        prompt = text_tokenizer(first_sentence(record.report), add_special_tokens=False)["input_ids"]
        prompts[row] = min(len(prompt), layout.text_tokens)
        domain = record.domain if record.domain in names else names[0]
        domains[row] = names.index(domain)
    flush()
    np.save(out_dir / "image_codes.npy", codes)
    np.save(out_dir / "text_ids.npy", text)
    np.save(out_dir / "prompt_lengths.npy", prompts)
    np.save(out_dir / "domains.npy", domains)
    meta = {"split": split, "pairs": n, "truncated_reports": truncated, "domains": names}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def open_cache(path: Path) -> TokenCache:
    meta = json.loads((path / "meta.json").read_text())
    load = lambda name: np.load(path / f"{name}.npy", mmap_mode="r")  # noqa: E731
    return TokenCache(
        load("image_codes"), load("text_ids"), load("prompt_lengths"), load("domains"), meta["domains"]
    )


class BatchSampler:
    """Deterministic mixed-domain sampling: the batch at step s depends only on (seed, s, process), so resuming at
    step s continues exactly where an uninterrupted run would be (the data position is the step counter)."""

    def __init__(
        self, cache: TokenCache, domain_weights: dict[str, float], batch_size: int, seed: int, rank: int = 0
    ):
        self.cache = cache
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        domains = np.asarray(cache.domains)
        self.pools = []
        weights = []
        for index, name in enumerate(cache.domain_names):
            pool = np.flatnonzero(domains == index)
            if len(pool) and domain_weights.get(name, 0) > 0:
                self.pools.append(pool)
                weights.append(domain_weights[name])
        if not self.pools:
            raise ValueError(
                f"no training pairs in the domains {sorted(domain_weights)} with positive weight"
            )
        self.weights = torch.tensor(weights, dtype=torch.float)

    def indices(self, step: int) -> np.ndarray:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 131 + self.rank)
        choice = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=generator)
        out = np.empty(self.batch_size, dtype=np.int64)
        for slot, pool_index in enumerate(choice.tolist()):
            pool = self.pools[pool_index]
            out[slot] = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        return out

    def batch(self, step: int, layout) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 [B, L], prompt_lengths [B]) for a step."""
        rows = np.sort(self.indices(step))  # sorted rows read the memory map sequentially
        codes = torch.from_numpy(np.asarray(self.cache.image_codes[rows], dtype=np.int64))
        text = torch.from_numpy(np.asarray(self.cache.text_ids[rows], dtype=np.int64))
        prompts = torch.from_numpy(np.asarray(self.cache.prompt_lengths[rows], dtype=np.int64))
        return layout.pack(text, codes), prompts
