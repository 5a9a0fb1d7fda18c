"""Infill accuracy: masks only what it claims, counts exactly, and is deterministic for a seed."""

import pytest
import torch

from medim.metrics.infill import infill_accuracy, infill_predictions
from medim.modeling import MeDiMModel
from medim.vocab import IMAGE, TEXT
from tests.core.helpers import tiny_config


class Oracle(torch.nn.Module):
    """Knows the clean sequences; predicts the truth at every position except where told to be wrong."""

    def __init__(self, layout, clean, wrong_modality=None):
        super().__init__()
        self.layout, self.clean, self.wrong_modality = layout, clean, wrong_modality
        self.seen = []
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, xt, t):
        self.seen.append((xt.clone(), t.clone()))
        match = torch.stack([self._source(row) for row in xt])
        logits = torch.full((*xt.shape, self.layout.vocab_size), -10.0)
        logits.scatter_(-1, match[..., None], 10.0)
        if self.wrong_modality is not None:
            wrong = self.layout.position_modality == self.wrong_modality
            logits[:, wrong] = logits[:, wrong].roll(1, dims=-1)
        return logits

    def _source(self, row):
        visible = row != self.layout.mask_id
        for clean in self.clean:
            if torch.equal(clean[visible], row[visible]):
                return clean
        raise AssertionError("unknown sequence")


def _clean(layout, n=12):
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(0, layout.text_vocab_size, (n, layout.text_tokens), generator=generator)
    text[:, -2:] = layout.pad_id  # every report ends in two pads
    codes = torch.randint(0, layout.codebook_size, (n, layout.image_tokens), generator=generator)
    return layout.pack(text, codes)


def test_a_perfect_model_scores_one_and_pads_are_never_masked():
    model = MeDiMModel(tiny_config())
    clean = _clean(model.layout)
    oracle = Oracle(model.layout, clean)
    result = infill_accuracy(oracle, clean, "text", fraction=0.5, batch_size=5)
    assert result["accuracy"] == 1.0 and result["masked"] > 0
    assert -1e-3 < result["log_likelihood"] <= 0.0  # the truth has (almost) all the probability
    for xt, t in oracle.seen:
        masked = xt == model.layout.mask_id
        assert not masked[:, model.layout.position_modality != TEXT].any()
        assert not masked[:, -2:].any()  # the pads
        torch.testing.assert_close(t, torch.full_like(t, 0.5))  # log-linear: t = masked fraction


def test_a_model_wrong_on_one_modality_scores_zero_there_only():
    model = MeDiMModel(tiny_config())
    clean = _clean(model.layout)
    oracle = Oracle(model.layout, clean, wrong_modality=IMAGE)
    wrong = infill_accuracy(oracle, clean, "image", fraction=0.4)
    assert wrong["accuracy"] == 0.0
    assert wrong["log_likelihood"] < -19.0  # the truth got logit -10 against one id at +10: log p ≈ -20
    assert infill_accuracy(oracle, clean, "text", fraction=0.4)["accuracy"] == 1.0


def test_real_model_is_deterministic_for_a_seed_and_checks_its_input():
    model = MeDiMModel(tiny_config())
    clean = _clean(model.layout)
    first = infill_accuracy(model, clean, "image", seed=3)
    assert first == infill_accuracy(model, clean, "image", seed=3)
    assert 0.0 <= first["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="modality"):
        infill_accuracy(model, clean, "audio")
    with pytest.raises(ValueError, match="fraction"):
        infill_accuracy(model, clean, "text", fraction=1.0)
    with pytest.raises(ValueError, match="sequences"):
        infill_accuracy(model, clean[:, :-1], "text")


def test_model_input_changes_what_the_model_reads_never_the_targets():
    """A pipeline's ``model_input`` (unknown words read as <unk>) reaches the model; the masks and the targets
    stay those of the written sequences, so the score cannot be gained by rewriting what is scored."""
    model = MeDiMModel(tiny_config())
    layout = model.layout
    clean = _clean(layout)
    plain = Oracle(layout, clean)
    written = infill_predictions(plain, clean, "text", fraction=0.3)
    unread = int(clean[written[0]][0])  # an id that is masked somewhere
    unknown = 1 if unread != 1 else 2

    def read(tokens):  # `unread` is read as `unknown`, as a pipeline reads an untrained id as <unk>
        return torch.where(tokens == unread, torch.full_like(tokens, unknown), tokens)

    reading = Oracle(layout, torch.stack([read(row) for row in clean]))
    remapped = infill_predictions(reading, clean, "text", fraction=0.3, model_input=read)
    assert torch.equal(remapped[0], written[0])  # the same masks
    assert all(not (xt == unread).any() for xt, _t in reading.seen)  # the model read the remapped ids
    masked, correct = remapped[0], remapped[1]
    unread_targets = masked & (clean == unread)
    assert unread_targets.any() and not correct[unread_targets].any()  # scored against the written id
    assert correct[masked & (clean != unread)].all()
