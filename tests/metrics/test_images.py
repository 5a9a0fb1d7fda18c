"""FID / IS plumbing with tiny feature networks: a set against itself, shifted sets, loading local Inceptions."""

import pytest
import torch
from PIL import Image
from torch import nn

from medim.metrics.images import (
    INCEPTION_UNAVAILABLE,
    FeatureExtractor,
    frechet_distance,
    images_to_uint8,
    inception_metrics,
    load_inception,
)


class TinyFeatures(FeatureExtractor):
    """Random projection of 4x4-pooled pixels to 8 features."""

    def __init__(self):
        super().__init__()
        self.projection = nn.Linear(3 * 16, 8)
        self.num_features = 8

    def forward(self, images):
        pooled = nn.functional.adaptive_avg_pool2d(images.float() / 255, 4)
        return self.projection(pooled.flatten(1))

    def describe(self):
        return {"name": "tiny-random"}


def random_images(count, seed, offset=0):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 200, (count, 3, 16, 16), generator=generator) + offset
    return pixels.clamp(0, 255).to(torch.uint8)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    images = random_images(64, seed=1)
    extractor = TinyFeatures()
    same = frechet_distance(images, images, extractor)
    shifted = frechet_distance(images, random_images(64, seed=1, offset=50), extractor)
    assert same["value"] == pytest.approx(0.0, abs=1e-4)
    assert shifted["value"] > 100 * max(same["value"], 1e-6)
    assert same["feature_extractor"] == {"name": "tiny-random"}
    assert (same["n_real"], same["n_fake"]) == (64, 64)


def test_frechet_distance_needs_two_images_and_uint8():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(random_images(1, 0), random_images(4, 0), TinyFeatures())
    with pytest.raises(ValueError, match="uint8"):
        frechet_distance(torch.zeros(4, 3, 8, 8), random_images(4, 0), TinyFeatures())


def test_images_to_uint8_resizes_and_rejects_mixed_sizes():
    images = [Image.new("L", (20, 20), 10), Image.new("RGB", (32, 32), (1, 2, 3))]
    assert images_to_uint8(images, size=16).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="different sizes"):
        images_to_uint8(images)


class FakeTFInception(nn.Module):
    """Mimics the StyleGAN3 `inception-2015-12-05.pt` interface; its softmax is the same for every image."""

    def __init__(self):
        super().__init__()
        self.projection = nn.Linear(3, 6)

    def forward(
        self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        features = self.projection(img.mean(dim=(2, 3)) / 255)
        if return_features:
            return features
        return torch.ones(img.shape[0], 10).softmax(-1)


class FeaturesOnly(nn.Module):
    def forward(self, img):
        return img.mean(dim=(2, 3)).repeat(1, 2)


def test_tf_style_torchscript_inception_gives_fid_and_is(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(FakeTFInception()).save(str(path))
    network = load_inception(path)
    assert network.flavour == "tf-inception-2015-12-05"
    assert network.num_features == 6 and network.has_logits
    images = random_images(12, seed=3)
    result = inception_metrics(images, images, network)
    assert result["fid"]["value"] == pytest.approx(0.0, abs=1e-4)
    # identical class distributions for every image: KL to the marginal is 0, IS = exp(0) = 1
    assert result["is"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert result["fid"]["feature_extractor"]["sha256"] == network.sha256


def test_exported_features_only_network_gives_fid_but_no_is(tmp_path):
    path = tmp_path / "features.pt2"
    program = torch.export.export(
        FeaturesOnly(), (torch.zeros(2, 3, 299, 299),), dynamic_shapes={"img": {0: torch.export.Dim("batch")}}
    )
    torch.export.save(program, str(path))
    network = load_inception(path)
    assert network.flavour == "generic" and network.num_features == 6 and not network.has_logits
    result = inception_metrics(random_images(8, 0), random_images(8, 1, offset=40), network)
    assert result["fid"]["value"] > 0
    assert network(random_images(1, 0)).shape == (1, 6)  # a batch of one still works
    assert "no classifier output" in result["is"]["skipped"]


def test_inception_missing_or_unreadable(tmp_path):
    assert inception_metrics(None, None, None) == {"skipped": INCEPTION_UNAVAILABLE}
    assert "cannot be downloaded" in INCEPTION_UNAVAILABLE
    with pytest.raises(ValueError, match="not found"):
        load_inception(tmp_path / "missing.pt")
    pickle_file = tmp_path / "weights.pth"
    pickle_file.write_bytes(b"\x80\x04not a zip archive")
    with pytest.raises(ValueError, match="not a TorchScript or torch.export archive"):
        load_inception(pickle_file)
