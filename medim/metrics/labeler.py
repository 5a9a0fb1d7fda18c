"""Rule-based finding labeler for radiology and pathology text (the CheXpert labeler's approach).

Three stages, as in Irvin et al. 2019: (1) *mention extraction* finds phrases naming a finding; (2) each mention
is *classified* as negated (``0``), uncertain (``-1``) or positive (``1``) from cue phrases in its clause (NegEx
style: pre-cues such as "no", "without", "may represent" scope forward, post-cues such as "has resolved",
"cannot be excluded" scope backward, and scopes stop at clause breaks such as "but" or ";"); (3) *aggregation*
over all mentions of a finding: positive beats uncertain beats negative. An absent key means "not mentioned".

"No Finding" (chest) is 1 when the text says something (a mention or a normal statement such as "the lungs are
clear") and no pathology is positive or uncertain; Support Devices do not count as pathology.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHEST_FINDINGS = (
    "No Finding",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Support Devices",
)
PATHOLOGY_FINDINGS = ("Tumor", "High Grade", "Necrosis", "Inflammation")
FINDINGS_BY_DOMAIN = {"chest_xray": CHEST_FINDINGS, "pathology": PATHOLOGY_FINDINGS}

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1


@dataclass(frozen=True)
class _Pattern:
    """A mention pattern; ``implied`` is the status the phrase itself carries ("benign" is a negative Tumor)."""

    regex: re.Pattern
    implied: int = POSITIVE


def _patterns(*specs: str | tuple[str, int]) -> tuple[_Pattern, ...]:
    out = []
    for spec in specs:
        text, implied = (spec, POSITIVE) if isinstance(spec, str) else spec
        out.append(_Pattern(re.compile(rf"\b(?:{text})", re.IGNORECASE), implied))
    return tuple(out)


_HEART = (
    r"(?:heart|cardiac)(?: size| silhouette| contours?| shadow)?|cardiomediastinal (?:silhouette|contours?)"
)
_NORMAL_HEART = (
    rf"(?:{_HEART}) (?:is |are |appears? |remains? )?(?:normal|unremarkable|within normal limits|not enlarged|top[- ]normal)"
    r"|normal (?:heart size|cardiac (?:size|silhouette)|size of the heart)"
    r"|(?:heart|cardiac silhouette) (?:is |appears )?normal in size"
)
_ENLARGED_HEART = (
    r"cardiomegaly|cardiac enlargement|enlarged (?:heart|cardiac silhouette)"
    rf"|(?:{_HEART}) (?:is |appears |remains )?(?:\w+ly )?(?:enlarged|increased|large)"
    r"|enlargement of the (?:heart|cardiac silhouette)|(?:increased|enlarged) (?:heart|cardiac) size"
)

CHEST_MENTIONS: dict[str, tuple[_Pattern, ...]] = {
    "Cardiomegaly": _patterns((_NORMAL_HEART, NEGATIVE), _ENLARGED_HEART),
    "Pleural Effusion": _patterns(
        r"pleural effusions?|effusions?|pleural fluid|hydrothorax|fluid in the pleural space",
        r"blunting of the (?:\w+ )?costophrenic angles?|costophrenic angle blunting|blunts the costophrenic angle",
        (r"costophrenic angles? (?:are|is) (?:sharp|clear|preserved)|sharp costophrenic angles?", NEGATIVE),
    ),
    "Pneumothorax": _patterns(r"pneumothora(?:x|ces)|ptx"),
    "Consolidation": _patterns(r"consolidat\w*"),
    "Lung Opacity": _patterns(
        r"opacit(?:y|ies)|opacification|infiltrates?|infiltration|airspace disease|air-space disease"
        r"|increased density|densit(?:y|ies) in the"
    ),
    "Lung Lesion": _patterns(
        r"nodul(?:e|es|ar)|mass(?:es)?(?! effect)|lung lesions?|focal lesions?|neoplasm|tumou?r"
    ),
    "Edema": _patterns(r"o?edema|vascular congestion|pulmonary congestion|heart failure|chf"),
    "Atelectasis": _patterns(r"atelecta\w*|(?:lobar|lobe|segmental) collapse"),
    "Support Devices": _patterns(
        r"(?:endotracheal|et|enteric|nasogastric|ng|og|orogastric|feeding|chest|tracheostomy|dobhoff) tubes?"
        r"|tubes? and lines?|lines? and tubes?|support devices?|catheters?|(?:central|venous|picc|ij|midline) lines?"
        r"|picc|pacemaker|pacer|defibrillator|icd|cardiac device|sternotomy wires|port-?a-?cath|drains?"
    ),
}
PATHOLOGY_MENTIONS: dict[str, tuple[_Pattern, ...]] = {
    "Tumor": _patterns(
        r"tumou?rs?|carcinomas?|adenocarcinomas?|malignan\w*|neoplas\w*|cancer|metasta\w*",
        (r"benign", NEGATIVE),
    ),
    "High Grade": _patterns(
        r"high[- ]grade|poorly[- ]differentiated|undifferentiated|grade (?:3|iii)",
        (r"low[- ]grade|well[- ]differentiated|grade (?:1|i)\b", NEGATIVE),
    ),
    "Necrosis": _patterns(r"necro\w*"),
    "Inflammation": _patterns(
        r"inflam\w*|lymphocytic|lymphocytes|lymphoplasmacytic|neutrophil\w*|plasma cells|immune (?:cell )?infiltrat\w*"
    ),
}
MENTIONS_BY_DOMAIN = {"chest_xray": CHEST_MENTIONS, "pathology": PATHOLOGY_MENTIONS}

# Statements that a chest report is normal although they name no finding (they make "No Finding" decidable).
_NORMAL_STATEMENT = re.compile(
    r"\b(?:no acute (?:cardiopulmonary|intrathoracic|chest) (?:process|abnormality|disease|findings?)"
    r"|lungs? (?:are |is )?(?:\w+ )?(?:and )?clear|normal chest|no acute (?:process|abnormality|findings?)"
    r"|unremarkable (?:chest )?radiograph)",
    re.IGNORECASE,
)

# Cue phrases. Pseudo-negations ("no change in") are removed before cue matching: they do not negate.
_PSEUDO = re.compile(
    r"\b(?:no (?:significant |interval )?change|not (?:significantly )?changed|without (?:significant |interval )?change"
    r"|no increase|no decrease|not only|unchanged)\b",
    re.IGNORECASE,
)
_PRE_UNCERTAIN = re.compile(
    r"\b(?:may|might|could|possibl[ey]|probabl[ey]|likely|suspicious (?:for|of)|suspected|suspect|concerning for"
    r"|worrisome for|questionable|question of|cannot (?:be )?(?:exclude|excluded|rule out)|can ?not exclude"
    r"|can't exclude|cannot rule out|not excluded|differential (?:diagnosis )?(?:includes?|of)|suggest\w*"
    r"|versus|vs\.?|equivocal|borderline|presumed|raising (?:the )?(?:concern|possibility) (?:for|of)"
    r"|consider|compatible with|indeterminate)\b|\?",
    re.IGNORECASE,
)
_PRE_NEGATIVE = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|resolution of|resolved|removal of|rather than"
    r"|no evidence of|no sign of|no signs of|neither|nor|clear of|ruled out)\b",
    re.IGNORECASE,
)
_POST_UNCERTAIN = re.compile(
    r"^[^.;]*?\b(?:cannot (?:be )?(?:excluded|ruled out)|can ?not be (?:excluded|ruled out)|not (?:be )?excluded"
    r"|(?:is|are) (?:also )?(?:possible|likely|suspected|questioned|not excluded)|versus|vs\.?|is a consideration"
    r"|may be present|could be present)\b",
    re.IGNORECASE,
)
_POST_NEGATIVE = re.compile(
    r"^[^.;]*?\b(?:(?:is|are|was|were|has|have)(?: been)? (?:not )?(?:no longer )?"
    r"(?:resolved|removed|absent|cleared|withdrawn)"
    r"|(?:is|are|was|were) (?:not|no longer) (?:seen|identified|visualized|visible|present|evident|appreciated"
    r"|demonstrated|detected|noted|enlarged)|(?:has|have) resolved|resolved|absent)\b",
    re.IGNORECASE,
)
# Words that end a cue's scope: a new clause with its own polarity.
_SCOPE_BREAK = re.compile(
    r"\b(?:but|however|although|though|except|aside from|apart from|other than|which|while|whereas|there is"
    r"|there are|there has been|with (?:a |an )?(?:new|small|moderate|large|mild|interval))\b|[;:]",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(
    r"(?<!vs\.)(?<=[.!?])\s+|\n+|(?<=\.)(?=[A-Z])|\b(?:FINDINGS|IMPRESSION|COMPARISON)\s*:\s*", re.IGNORECASE
)
_PRE_WINDOW_WORDS = 12
_POST_WINDOW_WORDS = 6

_SIDES = re.compile(r"\b(bilateral(?:ly)?|bibasilar|bibasal|both|right|left)\b", re.IGNORECASE)
_SEVERITIES = {
    "small": r"small|trace|tiny|minimal",
    "moderate": r"moderate(?:-sized)?|moderately",
    "large": r"large|sizable|massive|extensive",
    "mild": r"mild|mildly|slight|slightly",
    "severe": r"severe|severely|marked|markedly",
    "focal": r"focal|small area|small focus",
}
_SEVERITY = re.compile(r"\b(" + "|".join(_SEVERITIES.values()) + r")\b", re.IGNORECASE)
_LOCATIONS = {
    "upper": r"upper (?:lobe|lung|zone)|apex|apical|apices",
    "middle": r"middle lobe|mid ?lung|midlung|lingula|perihilar|hilar",
    "lower": r"lower (?:lobe|lung|zone)|bases?|basilar|basal|bibasilar|retrocardiac",
}
_LOCATION = re.compile(r"\b(" + "|".join(_LOCATIONS.values()) + r")\b", re.IGNORECASE)

_DOMAIN_WORDS = {
    "chest_xray": re.compile(
        r"\b(?:lungs?|pleura\w*|effusions?|pneumothora\w*|cardiac|heart|cardiomegaly|mediastin\w*|costophrenic"
        r"|atelecta\w*|consolidation|radiograph\w*|chest|hemidiaphragms?|diaphragm|opacit\w*|edema|osseous|ribs?"
        r"|hil(?:a|um|ar)|trachea|carina|tubes?|catheters?|lobes?|lingula|pulmonary)\b",
        re.IGNORECASE,
    ),
    "pathology": re.compile(
        r"\b(?:tumou?rs?|carcinoma\w*|adenocarcinoma|glands?|glandular|strom\w*|nucle\w*|mitos\w*|mitotic|necro\w*"
        r"|lymphocyt\w*|inflammat\w*|mucosa|crypts?|h&e|eosin\w*|tissue|patch|grade|differentiated|ducts?"
        r"|alveol\w*|septa|malignan\w*|benign|pleomorph\w*|cells?|infiltrat\w*|adipose|fat|biopsy|cytoplasm)\b",
        re.IGNORECASE,
    ),
}


def infer_domain(text: str) -> str:
    """Guess the domain of a report from its vocabulary: "chest_xray" or "pathology" (ties go to chest_xray)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    counts = {domain: len(regex.findall(text)) for domain, regex in _DOMAIN_WORDS.items()}
    return "pathology" if counts["pathology"] > counts["chest_xray"] else "chest_xray"


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s and s.strip()]


def _nearest(regex: re.Pattern, text: str) -> re.Match | None:
    """The last match of ``regex`` in ``text`` (the cue closest before a mention)."""
    last = None
    for last in regex.finditer(text):  # noqa: B007 - we want the final match
        pass
    return last


def _classify(sentence: str, start: int, end: int, implied: int) -> int:
    """Status of the mention ``sentence[start:end]`` from the cues around it in its clause."""
    after = sentence[end:]
    after = after[: m.start()] if (m := _SCOPE_BREAK.search(after)) else after
    if _POST_UNCERTAIN.search(after):
        return UNCERTAIN
    before = sentence[:start]
    if (m := _nearest(_SCOPE_BREAK, before)) is not None:
        before = before[m.end() :]
    before = " ".join(before.split()[-_PRE_WINDOW_WORDS:])
    before = _PSEUDO.sub(" ", before)
    uncertain, negative = _nearest(_PRE_UNCERTAIN, before), _nearest(_PRE_NEGATIVE, before)
    if uncertain and (
        negative is None or uncertain.end() >= negative.end() or "not" in uncertain.group(0).lower()
    ):
        return UNCERTAIN
    if implied == NEGATIVE:  # "benign", "heart size is normal": negations of these are rare and ambiguous
        return NEGATIVE
    after = " ".join(_PSEUDO.sub(" ", after).split()[:_POST_WINDOW_WORDS])
    if negative is not None or _POST_NEGATIVE.search(after):
        return NEGATIVE
    return POSITIVE


def _attribute(regex: re.Pattern, clause: str, start: int, end: int) -> str | None:
    """The attribute word in the clause closest to the mention span."""
    best, best_gap = None, None
    for m in regex.finditer(clause):
        gap = start - m.end() if m.end() <= start else m.start() - end if m.start() >= end else 0
        gap = gap if gap >= 0 else 0
        if best_gap is None or gap < best_gap:
            best, best_gap = m.group(1).lower(), gap
    return best


def _normalise_side(word: str | None) -> str | None:
    if word is None:
        return None
    return "bilateral" if word.startswith(("bilat", "bibas", "both")) else word


def _normalise(table: dict[str, str], word: str | None) -> str | None:
    if word is None:
        return None
    for name, pattern in table.items():
        if re.fullmatch(pattern, word, re.IGNORECASE):
            return name
    return None


def extract_findings(text: str, domain: str | None = None) -> dict[str, dict]:
    """Every mentioned finding with its aggregated status and attributes.

    Returns ``{finding: {"status": 1 | 0 | -1, "side": str | None, "severity": str | None,
    "location": str | None}}``; attributes come from the clause of the deciding mention (side: right/left/
    bilateral; severity: small/moderate/large/mild/severe/focal; location: upper/middle/lower zone).
    Never raises on odd text: empty or garbage input gives ``{}``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    domain = infer_domain(text) if domain is None else domain
    if domain not in MENTIONS_BY_DOMAIN:
        raise ValueError(f"domain must be one of {tuple(MENTIONS_BY_DOMAIN)} or None, got {domain!r}")
    found: dict[str, dict] = {}
    said_normal = False
    for sentence in _sentences(text):
        said_normal = said_normal or bool(_NORMAL_STATEMENT.search(sentence))
        taken: list[tuple[int, int]] = []
        for finding, patterns in MENTIONS_BY_DOMAIN[domain].items():
            for pattern in patterns:
                for m in pattern.regex.finditer(sentence):
                    if any(m.start() < e and s < m.end() for s, e in taken):
                        continue  # already part of a longer mention ("pleural effusion" vs "effusion")
                    taken.append((m.start(), m.end()))
                    status = _classify(sentence, m.start(), m.end(), pattern.implied)
                    _merge(found, finding, status, sentence, m.start(), m.end())
    if domain == "chest_xray" and (found or said_normal):
        pathology = [f for f in CHEST_FINDINGS if f not in ("No Finding", "Support Devices")]
        abnormal = any(found.get(f, {}).get("status") in (POSITIVE, UNCERTAIN) for f in pathology)
        found["No Finding"] = {
            "status": NEGATIVE if abnormal else POSITIVE,
            "side": None,
            "severity": None,
            "location": None,
        }
    return found


_RANK = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}


def _merge(found: dict[str, dict], finding: str, status: int, sentence: str, start: int, end: int) -> None:
    """Aggregate one mention: positive beats uncertain beats negative; attributes follow the deciding mention."""
    previous = found.get(finding)
    if previous is not None and _RANK[previous["status"]] > _RANK[status]:
        return
    clause_start = m.end() if (m := _nearest(_SCOPE_BREAK, sentence[:start])) else 0
    clause_end = end + m.start() if (m := _SCOPE_BREAK.search(sentence[end:])) else len(sentence)
    clause = sentence[clause_start:clause_end]
    s, e = start - clause_start, end - clause_start
    attrs = {
        "status": status,
        "side": _normalise_side(_attribute(_SIDES, clause, s, e)),
        "severity": _normalise(_SEVERITIES, _attribute(_SEVERITY, clause, s, e)),
        "location": _normalise(_LOCATIONS, _attribute(_LOCATION, clause, s, e)),
    }
    if previous is not None and _RANK[previous["status"]] == _RANK[status]:
        attrs = {k: attrs[k] if attrs[k] is not None else previous[k] for k in attrs}
    found[finding] = attrs


def label_report(text: str, domain: str | None = None) -> dict[str, int]:
    """CheXpert-style labels of a report: ``{finding: 1 | 0 | -1}``; findings not mentioned are absent.

    ``domain`` is "chest_xray" or "pathology"; ``None`` infers it from the text. Never raises on odd text.
    """
    return {name: info["status"] for name, info in extract_findings(text, domain).items()}


def to_binary_vector(labels: dict[str, int], domain: str) -> list[int]:
    """Labels as a 0/1 vector in the order of the domain's finding tuple (positive = 1, all else 0)."""
    if domain not in FINDINGS_BY_DOMAIN:
        raise ValueError(f"domain must be one of {tuple(FINDINGS_BY_DOMAIN)}, got {domain!r}")
    return [int(labels.get(name) == POSITIVE) for name in FINDINGS_BY_DOMAIN[domain]]
