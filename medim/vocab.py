"""Shared vocabulary layout and sequence packing: one sequence holds an image grid and a report.

Token ids::

    [0, text_vocab_size)                         text tokenizer ids
    [image_offset, image_offset + codebook_size) VQ image codes (image_offset = text_vocab_size)
    boi, eoi, pad, mask                          four specials after the image codes

Sequence positions::

    <boi> image_0 ... image_{N-1} <eoi> [prefix] text_0 ... text_{T-1} [suffix]

`prefix` and `suffix` are fixed token ids (empty unless a checkpoint's training format had them, e.g. the
official MeDiM release's image-size sentence before the report and <eos> after it); like <boi>/<eoi> they are
never masked or predicted.

Reports shorter than T are right-padded with `pad`; the model predicts the padding too, so it learns a
report's length. `mask` is the absorbing [MASK] state of the forward process and is never a prediction target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

SPECIAL = 0
IMAGE = 1
TEXT = 2


@dataclass(frozen=True)
class VocabLayout:
    text_vocab_size: int
    codebook_size: int
    image_tokens: int
    text_tokens: int
    prefix_ids: tuple[int, ...] = ()
    suffix_ids: tuple[int, ...] = ()
    suppressed_text_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("text_vocab_size", "codebook_size", "image_tokens", "text_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("prefix_ids", "suffix_ids"):
            bad = [i for i in getattr(self, name) if not 0 <= i < self.vocab_size or i == self.mask_id]
            if bad:
                raise ValueError(f"{name} {bad[:5]} are not valid non-[MASK] ids in [0, {self.vocab_size})")
        bad = [i for i in self.suppressed_text_ids if not 0 <= i < self.text_vocab_size]
        if bad:
            raise ValueError(f"suppressed_text_ids {bad[:5]} are outside the text vocabulary")

    @classmethod
    def from_config(cls, config) -> VocabLayout:
        h, w = config.image_grid
        return cls(
            config.text_vocab_size,
            config.codebook_size,
            h * w,
            config.max_text_tokens,
            tuple(getattr(config, "text_prefix_ids", ())),
            tuple(getattr(config, "text_suffix_ids", ())),
            tuple(getattr(config, "suppressed_text_ids", ())),
        )

    # ---- token ids -------------------------------------------------------------------------------------
    @property
    def image_offset(self) -> int:
        return self.text_vocab_size

    @property
    def boi_id(self) -> int:
        return self.text_vocab_size + self.codebook_size

    @property
    def eoi_id(self) -> int:
        return self.boi_id + 1

    @property
    def pad_id(self) -> int:
        return self.boi_id + 2

    @property
    def mask_id(self) -> int:
        return self.boi_id + 3

    @property
    def vocab_size(self) -> int:
        return self.boi_id + 4

    # ---- positions -------------------------------------------------------------------------------------
    @property
    def seq_len(self) -> int:
        return self.image_tokens + self.text_tokens + 2 + len(self.prefix_ids) + len(self.suffix_ids)

    @property
    def image_slice(self) -> slice:
        return slice(1, 1 + self.image_tokens)

    @property
    def text_slice(self) -> slice:
        start = 2 + self.image_tokens + len(self.prefix_ids)
        return slice(start, start + self.text_tokens)

    def _write_fixed(self, seq: torch.Tensor) -> None:
        """Write <boi>, <eoi>, the prefix and the suffix into sequences [B, L] in place."""
        seq[:, 0] = self.boi_id
        seq[:, 1 + self.image_tokens] = self.eoi_id
        if self.prefix_ids:
            seq[:, 2 + self.image_tokens : self.text_slice.start] = torch.tensor(
                self.prefix_ids, device=seq.device
            )
        if self.suffix_ids:
            seq[:, self.text_slice.stop :] = torch.tensor(self.suffix_ids, device=seq.device)

    @cached_property
    def position_modality(self) -> torch.Tensor:
        """LongTensor [L]: SPECIAL, IMAGE or TEXT for each sequence position."""
        modality = torch.full((self.seq_len,), SPECIAL, dtype=torch.long)
        modality[self.image_slice] = IMAGE
        modality[self.text_slice] = TEXT
        return modality

    @cached_property
    def allowed_tokens(self) -> torch.Tensor:
        """BoolTensor [3, V]: which ids may be predicted at a SPECIAL, IMAGE or TEXT position.

        Image positions may only hold image codes; text positions text ids or `pad`; nothing may ever predict
        `mask`. Special positions are never masked, so their row is empty.
        """
        allowed = torch.zeros(3, self.vocab_size, dtype=torch.bool)
        allowed[IMAGE, self.image_offset : self.image_offset + self.codebook_size] = True
        allowed[TEXT, : self.text_vocab_size] = True
        allowed[TEXT, list(self.suppressed_text_ids)] = False
        allowed[TEXT, self.pad_id] = True
        return allowed

    def modality_vocab_slice(self, modality: int) -> slice:
        """The contiguous id range a modality predicts from (text's range ends at its pad id)."""
        if modality == IMAGE:
            return slice(self.image_offset, self.image_offset + self.codebook_size)
        if modality == TEXT:
            # text ids and pad are not contiguous; callers that need the exact set use allowed_tokens
            return slice(0, self.text_vocab_size)
        raise ValueError(f"modality must be IMAGE ({IMAGE}) or TEXT ({TEXT}), got {modality}")

    # ---- packing ---------------------------------------------------------------------------------------
    def pad_text(self, token_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad (and truncate) report token lists to `text_tokens`.

        Returns (ids LongTensor [B, T], truncated BoolTensor [B]).
        """
        out = torch.full((len(token_lists), self.text_tokens), self.pad_id, dtype=torch.long)
        truncated = torch.zeros(len(token_lists), dtype=torch.bool)
        for row, ids in enumerate(token_lists):
            bad = [i for i in ids if not 0 <= i < self.text_vocab_size]
            if bad:
                raise ValueError(
                    f"text ids {bad[:5]} are outside the text vocabulary [0, {self.text_vocab_size})"
                )
            ids = list(ids)[: self.text_tokens]
            truncated[row] = len(token_lists[row]) > self.text_tokens
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out, truncated

    def pack(self, text_ids: torch.Tensor, image_codes: torch.Tensor) -> torch.Tensor:
        """Build sequences from padded text ids [B, T] and raw VQ codes [B, N] (0..codebook_size-1) -> [B, L]."""
        if text_ids.shape[-1] != self.text_tokens or image_codes.shape[-1] != self.image_tokens:
            raise ValueError(
                f"expected text [B, {self.text_tokens}] and image [B, {self.image_tokens}], "
                f"got {tuple(text_ids.shape)} and {tuple(image_codes.shape)}"
            )
        if image_codes.numel() and (image_codes.min() < 0 or image_codes.max() >= self.codebook_size):
            raise ValueError(
                f"image codes must be in [0, {self.codebook_size}), got range "
                f"[{int(image_codes.min())}, {int(image_codes.max())}]"
            )
        batch = text_ids.shape[0]
        seq = torch.empty(batch, self.seq_len, dtype=torch.long, device=text_ids.device)
        self._write_fixed(seq)
        seq[:, self.image_slice] = image_codes.to(text_ids.device) + self.image_offset
        seq[:, self.text_slice] = text_ids
        return seq

    def blank(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Fully masked sequences [B, L] (specials in place): the start of unconditional pair generation."""
        seq = torch.full((batch, self.seq_len), self.mask_id, dtype=torch.long, device=device)
        self._write_fixed(seq)
        return seq

    def image_codes(self, seq: torch.Tensor) -> torch.Tensor:
        """VQ codes [B, N] from sequences [B, L]; positions still masked (or holding a non-image id) give -1."""
        ids = seq[:, self.image_slice] - self.image_offset
        valid = (ids >= 0) & (ids < self.codebook_size)
        return torch.where(valid, ids, torch.full_like(ids, -1))

    def text_ids(self, seq: torch.Tensor) -> list[list[int]]:
        """Report token lists from sequences [B, L], cut at the first pad; masked positions are dropped."""
        out = []
        for row in seq[:, self.text_slice].tolist():
            ids = []
            for token in row:
                if token == self.pad_id:
                    break
                if 0 <= token < self.text_vocab_size:
                    ids.append(token)
            out.append(ids)
        return out
