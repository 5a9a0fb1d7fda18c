"""Tiny random MeDiM configs shared by the core tests."""

from medim.config import MeDiMConfig

FAMILIES = ("llama", "gemma", "qwen2")


def tiny_config(model_type: str = "llama", **overrides) -> MeDiMConfig:
    backbone = dict(
        model_type=model_type,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    kwargs = dict(
        backbone=backbone, text_vocab_size=40, codebook_size=16, image_grid=(2, 3), max_text_tokens=6
    )
    kwargs.update(overrides)
    return MeDiMConfig(**kwargs)
