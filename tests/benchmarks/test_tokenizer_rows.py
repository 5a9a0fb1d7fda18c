"""benchmarks.tokenizer's k-means reference row at any patch size: grid, id ranges and a lossless round trip."""

import torch

from benchmarks.tokenizer import PatchKMeansRow


def test_kmeans_row_encodes_a_finer_grid_and_decodes_its_own_centres_exactly():
    generator = torch.Generator().manual_seed(0)
    # two flat colours per domain: every 4x4 patch is one of the codebook's centres
    colours = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]], dtype=torch.uint8)
    pick = torch.randint(0, 2, (6, 16, 16), generator=generator)
    domains = torch.tensor([0, 0, 0, 1, 1, 1])
    cells = colours[pick + 2 * domains[:, None, None]].permute(0, 3, 1, 2)  # [6, 3, 16, 16] at 4x4 cells
    pixels = cells.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 64x64
    row = PatchKMeansRow(codebook_size=8, patch=4, samples=10_000)
    row.fit(pixels, domains)
    ids = row.encode(pixels, domains)
    assert ids.shape == (6, 256)
    assert (ids[:3] < 4).all() and (ids[3:] >= 4).all()  # each domain has its own half of the codes
    decoded = row.decode(ids, domains)
    assert decoded.dtype == torch.uint8 and decoded.shape == pixels.shape
    assert (decoded.int() - pixels.int()).abs().max() <= 1
