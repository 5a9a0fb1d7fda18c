"""Training stages: tokenizer (text BPE), vq (image VQ), medim (the diffusion model)."""
