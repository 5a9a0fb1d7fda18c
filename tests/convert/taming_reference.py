"""A taming-transformers style VQ-GAN written from its published architecture, used as the reference the
converted diffusers VQModel must reproduce (keys: encoder.down.{i}.block.{j}, decoder.up.{i}, mid.block_1, ...)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class Attn(nn.Module):
    """Single-head spatial self-attention with 1x1 convolutions."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = group_norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).transpose(1, 2)
        k = self.k(n).reshape(b, c, h * w)
        v = self.v(n).reshape(b, c, h * w)
        weights = torch.softmax(torch.bmm(q, k) * c**-0.5, dim=2)  # [b, query, key]
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Down(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric padding, as taming does


class Up(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResBlock(c, c), Attn(c), ResBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, dd: dict):
        super().__init__()
        ch, mult, res = dd["ch"], dd["ch_mult"], dd["resolution"]
        self.conv_in = nn.Conv2d(dd["in_channels"], ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(mult):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(dd["num_res_blocks"]):
                level.block.append(ResBlock(cin, ch * m))
                cin = ch * m
                if res in dd["attn_resolutions"]:
                    level.attn.append(Attn(cin))
            if i != len(mult) - 1:
                level.downsample = Down(cin)
                res //= 2
            self.down.append(level)
        self.mid = Mid(cin)
        self.norm_out, self.conv_out = group_norm(cin), nn.Conv2d(cin, dd["z_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, dd: dict):
        super().__init__()
        ch, mult = dd["ch"], dd["ch_mult"]
        cin = ch * mult[-1]
        res = dd["resolution"] // 2 ** (len(mult) - 1)
        self.conv_in = nn.Conv2d(dd["z_channels"], cin, 3, padding=1)
        self.mid = Mid(cin)
        levels = []
        for i in reversed(range(len(mult))):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(dd["num_res_blocks"] + 1):
                level.block.append(ResBlock(cin, ch * mult[i]))
                cin = ch * mult[i]
                if res in dd["attn_resolutions"]:
                    level.attn.append(Attn(cin))
            if i != 0:
                level.upsample = Up(cin)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out, self.conv_out = group_norm(cin), nn.Conv2d(cin, dd["out_ch"], 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class TamingVQGAN(nn.Module):
    """encode: pixels -> nearest-code ids [B, h*w]; decode: ids -> pixels (unclamped)."""

    def __init__(self, params: dict):
        super().__init__()
        dd = params["ddconfig"]
        self.encoder, self.decoder = Encoder(dd), Decoder(dd)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(params["n_embed"], params["embed_dim"])
        self.quant_conv = nn.Conv2d(dd["z_channels"], params["embed_dim"], 1)
        self.post_quant_conv = nn.Conv2d(params["embed_dim"], dd["z_channels"], 1)

    def encode(self, x):
        z = self.quant_conv(self.encoder(x)).permute(0, 2, 3, 1)
        flat = z.reshape(-1, z.shape[-1])
        codebook = self.quantize.embedding.weight
        distance = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.T
        return distance.argmin(1).view(x.shape[0], -1)

    def decode(self, ids, grid: int):
        z = self.quantize.embedding(ids).view(ids.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(z))


def randomize(module: nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (norm scales and biases too), so a mis-mapped tensor shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("weight") and param.ndim == 1:  # GroupNorm scale
                param.copy_(1 + 0.2 * torch.randn(param.shape, generator=generator))
            else:
                fan_in = param[0].numel() if param.ndim > 1 else 16
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
