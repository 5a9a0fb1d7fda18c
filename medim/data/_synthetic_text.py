"""Phrase banks for the synthetic reports: template variants, held-out (test-only) variants, sentence assembly.

Every sentence of a synthetic report comes from a :class:`PhraseBank`. A bank holds ``common`` templates, used in
every split, and ``heldout`` templates, used only when generating the test split, so a model evaluated on the test
split meets phrasings it never saw in training. Templates are ``str.format`` strings with named slots
(``{side}``, ``{sev}``, ...); the first letter of each sentence is capitalised after filling.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

# Chance of drawing from the held-out variants of a bank (when it has any) while generating the test split.
HELDOUT_RATE = 0.5

_ALL_BANKS: list[PhraseBank] = []


@dataclass(frozen=True)
class PhraseBank:
    """Interchangeable templates for one statement; ``heldout`` ones appear only in the test split."""

    name: str
    common: tuple[str, ...]
    heldout: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.common:
            raise ValueError(f"phrase bank {self.name!r} needs at least one common template")

    def pick(self, rng: np.random.Generator, *, test: bool) -> str:
        """One template: a held-out one with probability HELDOUT_RATE when ``test`` and the bank has any."""
        if test and self.heldout and rng.random() < HELDOUT_RATE:
            return self.heldout[rng.integers(len(self.heldout))]
        return self.common[rng.integers(len(self.common))]

    def say(self, rng: np.random.Generator, *, test: bool, **slots: str) -> str:
        """Pick a template, fill its slots and return a capitalised sentence."""
        return sentence(self.pick(rng, test=test).format(**slots))


def bank(
    name: str, common: list[str] | tuple[str, ...], heldout: list[str] | tuple[str, ...] = ()
) -> PhraseBank:
    """Create a phrase bank and register it so the held-out signatures can be listed."""
    made = PhraseBank(name, tuple(common), tuple(heldout))
    _ALL_BANKS.append(made)
    return made


def all_banks() -> tuple[PhraseBank, ...]:
    """Every registered phrase bank (both domains, once their modules are imported)."""
    return tuple(_ALL_BANKS)


def literal_signature(template: str) -> str:
    """The longest literal (slot-free) piece of a template, lower-cased and stripped of end punctuation."""
    pieces = [lit for lit, _field, _spec, _conv in string.Formatter().parse(template)]
    longest = max(pieces, key=lambda piece: len(piece.strip()))
    return longest.strip().strip(".,;").lower()


def heldout_signatures() -> dict[str, str]:
    """Map each held-out template to its literal signature: a fragment that only that variant writes."""
    return {tpl: literal_signature(tpl) for b in _ALL_BANKS for tpl in b.heldout}


_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU](?!ni|ne|sual|u))")
_SPACES = re.compile(r"\s+")


def sentence(text: str) -> str:
    """Tidy one filled template: single spaces, 'a'→'an' before vowels, capital first letter, final period."""
    text = _SPACES.sub(" ", text).strip()
    text = _ARTICLE.sub(lambda m: m.group(1) + "n ", text)
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def word_count(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())


def choice(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    """One option, uniformly."""
    return options[rng.integers(len(options))]


def weighted_choice(rng: np.random.Generator, options: dict[str, float]) -> str:
    """One key of ``options``, drawn with probability proportional to its value."""
    names = list(options)
    probs = np.array([options[n] for n in names], dtype=float)
    return names[rng.choice(len(names), p=probs / probs.sum())]
