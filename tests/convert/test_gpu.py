"""The converted (tiny) official model on CUDA with bf16 autocast: the three tasks run and agree with CPU fp32."""

from __future__ import annotations

import pytest
import torch

from tests.convert.conftest import needs_core

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    needs_core,
]


@pytest.fixture(scope="module")
def cuda_pipe(converted_dir):
    from medim.pipeline import MeDiMPipeline

    return MeDiMPipeline.from_pretrained(converted_dir, device="cuda")


@pytest.mark.parametrize("task", ["report2image", "image2report", "pair"])
def test_three_tasks_on_cuda_bf16(cuda_pipe, task):
    from PIL import Image

    image = Image.new("RGB", (24, 16), (120, 110, 100))
    result = cuda_pipe.run(task, report="No pleural effusion.", image=image, seed=0, steps=4)
    layout = cuda_pipe.layout
    generated = result.tokens[:, layout.image_slice if task == "report2image" else layout.text_slice]
    assert not (generated == layout.mask_id).any()
    assert result.images[0].size == (cuda_pipe.config.image_size,) * 2
    assert isinstance(result.reports[0], str)


def test_bf16_logits_track_fp32(cuda_pipe, converted_dir):
    from medim.pipeline import MeDiMPipeline

    cpu = MeDiMPipeline.from_pretrained(converted_dir, device="cpu")
    x = cuda_pipe.layout.blank(2)
    t = torch.tensor([1.0, 0.5])
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        gpu_logits = cuda_pipe.model(x.cuda(), t.cuda()).float().cpu()
    with torch.no_grad():
        cpu_logits = cpu.model(x, t)
    assert torch.isfinite(gpu_logits).all()
    assert (gpu_logits - cpu_logits).abs().max() < 0.1 * cpu_logits.abs().max()
