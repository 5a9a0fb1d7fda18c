"""MeDiM: unified medical multimodal generation with a masked discrete diffusion model on an MLLM backbone.

Heavy modules (transformers, diffusers) are imported lazily: `from medim.pipeline import MeDiMPipeline`.
"""

__version__ = "0.1.0"
