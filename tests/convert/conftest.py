"""Fixtures for the converter tests: a tiny Llama-style tokenizer, a tiny taming VQ-GAN and official-layout
backbone weights, all random and written to disk in the official file formats."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from medim.config import MeDiMConfig
from medim.convert_official import REQUIRED_CONFIG_FIELDS, convert
from tests.convert.official_reference import TINY_GEMMA, random_official_state
from tests.convert.taming_reference import TamingVQGAN, randomize

CORE_READY = set(REQUIRED_CONFIG_FIELDS) <= {f.name for f in dataclasses.fields(MeDiMConfig)}
needs_core = pytest.mark.skipif(
    not CORE_READY, reason="MeDiMConfig lacks the official-compatibility fields (docs/official_weights.md)"
)
REPORT_SLOTS = 8  # official report slots in the tiny setup (256 in the release), the first holding <s>

CORPUS = [
    "Image Size: Width is tensor([512]) Height is tensor([512]).",
    "The image is a radiograph of the chest, showing the thoracic cavity structures.",
    "No pleural effusion or pneumothorax. The heart is normal in size.",
    "Moderate left pleural effusion with adjacent atelectasis.",
    "Hematoxylin and eosin stained tissue with atypical glands.",
]

# 3 levels (16 px -> 4x4 grid), attention at 8 px in the down and up paths, 32 channels for GroupNorm(32)
VQGAN_PARAMS = {
    "embed_dim": 4,
    "n_embed": 24,
    "ddconfig": {
        "double_z": False,
        "z_channels": 8,
        "resolution": 16,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 1, 2],
        "num_res_blocks": 1,
        "attn_resolutions": [8],
        "dropout": 0.0,
    },
}


@pytest.fixture(scope="session")
def llama_tokenizer_dir(tmp_path_factory) -> Path:
    """A small BPE with Llama-2's specials (<unk>=0, <s>=1, </s>=2), BOS added on encode, and no pad token."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = __import__("tokenizers").decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    directory = tmp_path_factory.mktemp("llama_tokenizer")
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def taming_vqgan() -> TamingVQGAN:
    model = TamingVQGAN(VQGAN_PARAMS).eval()
    randomize(model, seed=1)
    return model


@pytest.fixture(scope="session")
def vqgan_files(tmp_path_factory, taming_vqgan) -> tuple[Path, Path]:
    """(vqgan.ckpt, vqgan.yaml) as Chameleon ships them: a Lightning-style {"state_dict": ...} with loss tensors."""
    directory = tmp_path_factory.mktemp("vqgan")
    state = dict(taming_vqgan.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(2, 3, 4, 4)  # training-only, ignored
    torch.save({"state_dict": state, "global_step": 7}, directory / "vqgan.ckpt")
    config = {
        "model": {"target": "taming.models.vqgan.VQModel", "params": {**VQGAN_PARAMS, "lossconfig": {}}}
    }
    (directory / "vqgan.yaml").write_text(yaml.safe_dump(config))
    return directory / "vqgan.ckpt", directory / "vqgan.yaml"


def official_vocab_size(tokenizer_dir: Path) -> int:
    """Tokenizer ids + <boi>/<eoi>/<eos> + [MASK] + the VQ codebook: the official embedding rows."""
    return len(PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)) + 3 + 1 + VQGAN_PARAMS["n_embed"]


def write_official_backbone(
    directory: Path, state: dict, *, config: dict | None = None, shards: int = 2, binary: bool = False
) -> Path:
    """Write config.json and weights as safetensors (or torch .bin) shards with an index, like save_pretrained."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config or TINY_GEMMA))
    keys = sorted(state)
    weight_map = {}
    suffix = "bin" if binary else "safetensors"
    for index in range(shards):
        name = f"model-{index + 1:05d}-of-{shards:05d}.{suffix}"
        part = {k: state[k].contiguous() for k in keys[index::shards]}
        if binary:
            torch.save(part, directory / name)
        else:
            save_file(part, str(directory / name))
        weight_map.update(dict.fromkeys(part, name))
    (directory / f"model.{suffix}.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


@pytest.fixture(scope="session")
def official_state(llama_tokenizer_dir) -> dict:
    return random_official_state(TINY_GEMMA, official_vocab_size(llama_tokenizer_dir), tied=True, seed=2)


def convert_release(
    tmp_path: Path, vqgan_files, tokenizer_dir: Path, state: dict, name: str = "out", **kwargs
) -> Path:
    """Write `state` as an official backbone directory and convert it with the tiny VQ-GAN and tokenizer."""
    ckpt, config = vqgan_files
    backbone = write_official_backbone(tmp_path / f"{name}_backbone", state)
    return convert(
        backbone, ckpt, config, tokenizer_dir, tmp_path / name, report_tokens=REPORT_SLOTS, **kwargs
    )


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory, vqgan_files, llama_tokenizer_dir, official_state) -> Path:
    if not CORE_READY:
        pytest.skip("MeDiMConfig lacks the official-compatibility fields")
    return convert_release(
        tmp_path_factory.mktemp("converted"), vqgan_files, llama_tokenizer_dir, official_state
    )
