"""Image tokenizers compared by what they keep of the findings, not only by PSNR.

    python -m benchmarks.tokenizer --corpus runs/corpus \
        --tokenizer default=assets/default/image_tokenizer --tokenizer new=runs/vq/image_tokenizer

Per domain, on the validation split (tokenizers are chosen here, never on test):
- reconstruction PSNR, code usage and perplexity (exp of the code histogram's entropy);
- the bundled judge's macro-F1 on the reconstructions next to its macro-F1 on the original images: a decoder that
  loses a finding loses it for every image the model draws (target: >= 0.9 x the originals');
- a linear probe (logistic regression per finding) on the one-hot codes, trained on training images: what a
  model reading the codes could know without any decoder;
- the token budget (codes per image).
Reference rows: the raw 64x64 pixels under the same probe, and plain k-means on 8x8 RGB patches (a per-domain
codebook of half the size each, fitted on the same training images; a lookup table, not a learned decoder).
Results: benchmarks/results/tokenizer.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO, RESULTS, load_judge, machine_description, markdown_table, write_result
from medim.tokenizers.vq_training import code_statistics

DOMAINS = ("chest_xray", "pathology")


def _macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(
        np.mean([f1_score(truth[:, c], predicted[:, c], zero_division=0) for c in range(truth.shape[1])])
    )


def judge_macro_f1(judge, probabilities: np.ndarray, data, domain_index: int) -> float:
    """Macro-F1 of the judge's findings of one domain (``probabilities`` = ``judge.predict(pixels)[0]`` of the
    images of ``data``) against the images' labels."""
    columns = [c for c, (d, _) in enumerate(judge.config.output_names) if d == DOMAINS[domain_index]]
    rows = (data.domain_index == domain_index).numpy()
    truth = data.targets[rows][:, columns].numpy().astype(int)
    return _macro_f1(truth, (probabilities[rows][:, columns] >= 0.5).astype(int))


def linear_probe(train_x, train_y: np.ndarray, val_x, val_y: np.ndarray) -> float:
    """Macro-F1 on validation of one logistic regression per finding (balanced classes)."""
    from sklearn.linear_model import LogisticRegression

    predicted = np.zeros_like(val_y)
    for column in range(train_y.shape[1]):
        if train_y[:, column].min() == train_y[:, column].max():
            predicted[:, column] = train_y[0, column]
            continue
        model = LogisticRegression(C=0.5, max_iter=300, class_weight="balanced")
        model.fit(train_x, train_y[:, column])
        predicted[:, column] = model.predict(val_x)
    return _macro_f1(val_y, predicted)


def one_hot(ids: np.ndarray, codebook_size: int):
    from scipy.sparse import csr_matrix

    n, positions = ids.shape
    columns = (np.arange(positions)[None] * codebook_size + ids).ravel()
    rows = np.repeat(np.arange(n), positions)
    return csr_matrix(
        (np.ones(len(columns), dtype=np.float32), (rows, columns)), shape=(n, positions * codebook_size)
    )


def psnr(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    mse = (reconstruction.float() - original.float()).pow(2).flatten(1).mean(1).clamp_min(1e-6)
    return float((10 * torch.log10(255.0**2 / mse)).mean())


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


class VQRow:
    def __init__(self, path: str):
        from medim.tokenizers.image import load_image_tokenizer

        self.tokenizer = load_image_tokenizer(path).eval()
        self.codebook_size = self.tokenizer.codebook_size

    def fit(self, train_pixels: torch.Tensor, train_domains: torch.Tensor) -> None:
        pass

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, domains: torch.Tensor) -> np.ndarray:
        x = pixels.float() / 127.5 - 1
        return torch.cat([self.tokenizer.encode(x[i : i + 128]) for i in range(0, len(x), 128)]).numpy()

    @torch.no_grad()
    def decode(self, ids: np.ndarray, domains: torch.Tensor) -> torch.Tensor:
        ids = torch.from_numpy(ids)
        return _to_uint8(
            torch.cat([self.tokenizer.decode(ids[i : i + 128]) for i in range(0, len(ids), 128)])
        )


class PatchKMeansRow:
    """k-means on p x p RGB patches, one codebook per domain (ids of domain d offset by d * k / 2)."""

    def __init__(self, codebook_size: int = 1024, patch: int = 8, samples: int = 150_000, seed: int = 0):
        self.codebook_size, self.patch, self.samples, self.seed = codebook_size, patch, samples, seed
        self.centres: dict[int, torch.Tensor] = {}

    def _patches(self, pixels: torch.Tensor) -> torch.Tensor:
        from medim.tokenizers.patch_kmeans import patchify

        return patchify(pixels.float() / 127.5 - 1, self.patch)

    def fit(self, train_pixels: torch.Tensor, train_domains: torch.Tensor) -> None:
        from medim.tokenizers.vq_training import kmeans

        generator = torch.Generator().manual_seed(self.seed)
        for domain in range(len(DOMAINS)):
            vectors = self._patches(train_pixels[train_domains == domain]).reshape(-1, 3 * self.patch**2)
            vectors = vectors[torch.randperm(len(vectors), generator=generator)[: self.samples]]
            self.centres[domain] = kmeans(vectors, self.codebook_size // 2, 15, generator)

    def encode(self, pixels: torch.Tensor, domains: torch.Tensor) -> np.ndarray:
        out = np.zeros((len(pixels), (pixels.shape[-1] // self.patch) ** 2), dtype=np.int64)
        for domain, centres in self.centres.items():
            rows = (domains == domain).numpy()
            if rows.any():
                patches = self._patches(pixels[rows])
                ids = torch.cdist(patches.reshape(-1, patches.shape[-1]), centres).argmin(1)
                out[rows] = ids.view(patches.shape[0], -1).numpy() + domain * (self.codebook_size // 2)
        return out

    def decode(self, ids: np.ndarray, domains: torch.Tensor) -> torch.Tensor:
        table = torch.cat([self.centres[d] for d in sorted(self.centres)])
        from medim.tokenizers.patch_kmeans import unpatchify

        return _to_uint8(unpatchify(table[torch.from_numpy(ids)], self.patch, 3))


def evaluate_row(row, judge, train, val) -> dict:
    row.fit(train.pixels, train.domain_index)
    train_ids = row.encode(train.pixels, train.domain_index)
    val_ids = row.encode(val.pixels, val.domain_index)
    reconstruction = row.decode(val_ids, val.domain_index)
    judged, _ = judge.predict(reconstruction)  # once for both domains
    result = {"tokens": int(val_ids.shape[1]), "codebook": row.codebook_size}
    for index, domain in enumerate(DOMAINS):
        rows_v = (val.domain_index == index).numpy()
        rows_t = (train.domain_index == index).numpy()
        columns = [c for c, (d, _) in enumerate(judge.config.output_names) if d == domain]
        counts = torch.bincount(torch.from_numpy(val_ids[rows_v]).flatten(), minlength=row.codebook_size)
        usage, perplexity = code_statistics(counts)
        result[domain] = {
            "psnr": psnr(reconstruction[rows_v], val.pixels[rows_v]),
            "usage": usage,
            "perplexity": perplexity,
            "judge_f1": judge_macro_f1(judge, judged, val, index),
            "probe_f1": linear_probe(
                one_hot(train_ids[rows_t], row.codebook_size),
                train.targets[rows_t][:, columns].numpy().astype(int),
                one_hot(val_ids[rows_v], row.codebook_size),
                val.targets[rows_v][:, columns].numpy().astype(int),
            ),
        }
    return result


def pixel_probe(judge, train, val) -> dict:
    result = {}
    judged, _ = judge.predict(val.pixels)
    for index, domain in enumerate(DOMAINS):
        rows_v = (val.domain_index == index).numpy()
        rows_t = (train.domain_index == index).numpy()
        columns = [c for c, (d, _) in enumerate(judge.config.output_names) if d == domain]
        result[domain] = {
            "judge_f1": judge_macro_f1(judge, judged, val, index),
            "probe_f1": linear_probe(
                train.pixels[rows_t].float().flatten(1).numpy() / 255.0,
                train.targets[rows_t][:, columns].numpy().astype(int),
                val.pixels[rows_v].float().flatten(1).numpy() / 255.0,
                val.targets[rows_v][:, columns].numpy().astype(int),
            ),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tokenizer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--corpus", required=True, help="synthetic corpus root with train/ and val/ splits")
    parser.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a VQ tokenizer directory to compare",
    )
    parser.add_argument(
        "--train-images", type=int, default=3200, help="training images for probes and k-means"
    )
    parser.add_argument("--val-images", type=int, default=600)
    parser.add_argument("--kmeans-codes", type=int, default=1024, help="0 skips the k-means reference row")
    parser.add_argument(
        "--kmeans-patch", type=int, default=8, help="patch side of the k-means row (4: a 16x16 grid at 64 px)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--judge", default=str(REPO / "assets" / "judge"))
    parser.add_argument("--out", default=str(RESULTS / "tokenizer.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from medim.metrics.judge import load_labelled_split

    judge = load_judge(Path(args.judge))
    if judge is None:
        parser.error(f"no judge at {args.judge}")
    machine = machine_description()
    train = load_labelled_split(args.corpus, "train", judge.config, limit=args.train_images)
    val = load_labelled_split(args.corpus, "val", judge.config, limit=args.val_images)
    rows = {}
    for item in args.tokenizer:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"--tokenizer expects NAME=DIR, got {item!r}")
        print(f"[tokenizer] {name}", flush=True)
        rows[name] = evaluate_row(VQRow(path), judge, train, val)
    if args.kmeans_codes:
        print(f"[tokenizer] k-means {args.kmeans_patch}x{args.kmeans_patch} patches", flush=True)
        patch = args.kmeans_patch
        rows[f"k-means {patch}x{patch} patches ({args.kmeans_codes} codes)"] = evaluate_row(
            PatchKMeansRow(args.kmeans_codes, patch=patch), judge, train, val
        )
    pixels = pixel_probe(judge, train, val)

    header = ["tokenizer", "tokens/image", "codes"]
    for domain in DOMAINS:
        header += [
            f"{domain} PSNR",
            f"{domain} usage / perplexity",
            f"{domain} judge F1 (ratio)",
            f"{domain} probe F1",
        ]
    table = []
    for name, result in rows.items():
        line = [name, result["tokens"], result["codebook"]]
        for domain in DOMAINS:
            entry = result[domain]
            ratio = entry["judge_f1"] / pixels[domain]["judge_f1"]
            line += [
                f"{entry['psnr']:.1f} dB",
                f"{entry['usage']:.2f} / {entry['perplexity']:.0f}",
                f"{entry['judge_f1']:.3f} ({ratio:.2f})",
                f"{entry['probe_f1']:.3f}",
            ]
        table.append(line)
    original = ["original 64x64 pixels", "-", "-"]
    for domain in DOMAINS:
        original += [
            "-",
            "-",
            f"{pixels[domain]['judge_f1']:.3f} (1.00)",
            f"{pixels[domain]['probe_f1']:.3f}",
        ]
    table.append(original)
    sections = [
        f"Validation split of `{args.corpus}`: first {args.val_images} images (both domains); probes and k-means "
        f"fitted on the first {args.train_images} training images. Judge: `{Path(args.judge).name}` (bundled). "
        "Ratio = judge macro-F1 on reconstructions / on the originals (target >= 0.9).",
        markdown_table(header, table),
    ]
    path = write_result(
        "tokenizer", "Image tokenizers: what the codes keep of the findings", sections, machine, args.out
    )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
