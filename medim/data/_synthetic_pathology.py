"""Procedural H&E histopathology patches and their descriptive reports (the "pathology" synthetic domain).

A scene holds a tissue type (colon, breast or lung) and the findings "Tumor" (with its grade as severity),
"High Grade", "Necrosis" and "Inflammation". :func:`render` draws the patch as haematoxylin and eosin optical
densities (nuclei, cytoplasm, stroma, lumens and fat) and converts them to RGB with the Beer-Lambert law and
per-image stain vectors, so stain colour varies like real slides from different labs.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from medim.data._synthetic_fields import pixel_grid, ramp, smooth_noise
from medim.data._synthetic_text import bank, weighted_choice, word_count

TISSUES = {"colon": 0.4, "breast": 0.35, "lung": 0.25}
TUMOR_PROB = 0.5
HIGH_GRADE_PROB = 0.45
NECROSIS_PROB = {"high": 0.55, "low": 0.2}  # necrosis is drawn only inside tumours
INFLAMMATION_PROB = 0.35
TUMOR_TYPE = {"colon": "adenocarcinoma", "breast": "invasive ductal carcinoma", "lung": "adenocarcinoma"}
TISSUE_NAME = {"colon": "colonic mucosa", "breast": "breast tissue", "lung": "lung parenchyma"}

# Reference stain vectors (optical density per RGB channel) for haematoxylin and eosin.
_H_VECTOR = np.array([0.56, 0.72, 0.41], dtype=np.float32)
_E_VECTOR = np.array([0.22, 0.80, 0.56], dtype=np.float32)
_SUPERSAMPLE = 2
_MASK_RES = 64  # resolution of smooth region masks (tumour, fat, infiltrate, necrosis)


def sample_findings(rng: np.random.Generator) -> tuple[str, dict[str, dict]]:
    """Draw one patch: (tissue type, ``{finding: {"side", "severity", "location"}}``).

    "Tumor" carries its grade ("low"/"high") as severity; "High Grade" appears only with a high-grade tumour;
    "Necrosis" (severity "focal"/"extensive") only inside a tumour; "Inflammation" has severity
    "mild"/"moderate"/"marked".
    """
    tissue = weighted_choice(rng, TISSUES)
    findings: dict[str, dict] = {}
    if rng.random() < TUMOR_PROB:
        grade = "high" if rng.random() < HIGH_GRADE_PROB else "low"
        findings["Tumor"] = {"side": None, "severity": grade, "location": None, "type": TUMOR_TYPE[tissue]}
        if grade == "high":
            findings["High Grade"] = {"side": None, "severity": None, "location": None}
        if rng.random() < NECROSIS_PROB[grade]:
            extent = "extensive" if rng.random() < 0.4 else "focal"
            findings["Necrosis"] = {"side": None, "severity": extent, "location": None}
    if rng.random() < INFLAMMATION_PROB:
        severity = weighted_choice(rng, {"mild": 0.4, "moderate": 0.4, "marked": 0.2})
        findings["Inflammation"] = {"side": None, "severity": severity, "location": None}
    return tissue, findings


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


class _Canvas:
    """Three 8-bit drawing layers at the supersampled resolution: nuclei (H density), cytoplasm, clear space."""

    def __init__(self, size: int):
        self.size = size
        self.nuclei = Image.new("L", (size, size))
        self.cytoplasm = Image.new("L", (size, size))
        self.clear = Image.new("L", (size, size))
        self.draw_nuclei = ImageDraw.Draw(self.nuclei)
        self.draw_cytoplasm = ImageDraw.Draw(self.cytoplasm)
        self.draw_clear = ImageDraw.Draw(self.clear)

    def blobs(
        self,
        draw: ImageDraw.ImageDraw,
        centres: np.ndarray,
        radii: np.ndarray,
        values,
        rng,
        *,
        irregular: float = 0.1,
        aspect: np.ndarray | float = 1.0,
        vertices: int = 10,
    ) -> None:
        """Draw jittered polygons (one per centre, [n, 2] in [0, 1]) with radii [n] and fill values [n] or int."""
        n = len(centres)
        if n == 0:
            return
        angles = np.linspace(0.0, 2 * math.pi, vertices, endpoint=False)[None, :]
        jitter = 1.0 + irregular * rng.uniform(-1.0, 1.0, size=(n, vertices))
        turn = rng.uniform(0.0, math.pi, size=(n, 1))
        aspect = np.broadcast_to(np.asarray(aspect, dtype=float), (n,))[:, None]
        rx = radii[:, None] * jitter * np.cos(angles) * aspect
        ry = radii[:, None] * jitter * np.sin(angles)
        xs = (centres[:, :1] + rx * np.cos(turn) - ry * np.sin(turn)) * self.size
        ys = (centres[:, 1:] + rx * np.sin(turn) + ry * np.cos(turn)) * self.size
        fills = np.broadcast_to(np.asarray(values), (n,)).astype(int).tolist()
        for coords, fill in zip(np.stack([xs, ys], axis=-1).reshape(n, -1).tolist(), fills):
            draw.polygon(coords, fill=fill)

    def dots(self, points: np.ndarray, value: int, diameter: int) -> None:
        """Stamp many round nuclei of one size at once: points [n, 2] in [0, 1], ``diameter`` 3, 5 or 7 pixels."""
        if len(points) == 0:
            return
        layer = np.zeros((self.size, self.size), np.uint8)
        idx = np.clip((points * self.size).astype(int), 0, self.size - 1)
        layer[idx[:, 1], idx[:, 0]] = 255
        stamp = Image.fromarray(layer).filter(_BOX3 if diameter <= 3 else _DISK5)
        if diameter >= 7:
            stamp = stamp.filter(_BOX3)
        stamp = stamp.point(lambda v: value if v else 0)
        self.nuclei = ImageChops.lighter(self.nuclei, stamp)
        self.draw_nuclei = ImageDraw.Draw(self.nuclei)


# Binary dilation kernels: on a 0/255 image the weighted sum saturates, so a single pixel grows into the shape.
_BOX3 = ImageFilter.Kernel((3, 3), [1] * 9, scale=1)
_DISK5 = ImageFilter.Kernel((5, 5), [0, 1, 1, 1, 0] + [1] * 15 + [0, 1, 1, 1, 0], scale=1)


def _jittered_grid(rng: np.random.Generator, spacing: float, jitter: float) -> np.ndarray:
    """Centres [n, 2] on a hexagonal grid over the patch (with a margin), randomly shifted."""
    rows = np.arange(-spacing, 1.0 + spacing, spacing * 0.87)
    pts = [
        (x + (i % 2) * spacing / 2, y)
        for i, y in enumerate(rows)
        for x in np.arange(-spacing, 1.0 + spacing, spacing)
    ]
    pts = np.asarray(pts) + rng.uniform(0, spacing, size=2)
    return pts + rng.normal(0.0, jitter * spacing, size=pts.shape)


def _lookup(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values [n] of a [size, size] mask at points [n, 2] in [0, 1] (nearest pixel, clamped)."""
    size = mask.shape[0]
    idx = np.clip((points * size).astype(int), 0, size - 1)
    return mask[idx[:, 1], idx[:, 0]]


def _blob_mask(rng: np.random.Generator, size: int, coverage: float, bumpiness: float = 0.6) -> np.ndarray:
    """Soft irregular region [size, size] in [0, 1] covering roughly ``coverage`` of the patch."""
    x, y = pixel_grid(size)
    cx, cy = rng.uniform(0.25, 0.75, size=2)
    radius = math.sqrt(coverage / math.pi) * 1.1
    rel = np.hypot(x - cx, y - cy) / radius - 1.0 - bumpiness * 0.35 * smooth_noise(rng, 6, size)
    return ramp(rel, 0.12)


def _glands(
    canvas: _Canvas, rng, centres, radius, *, nuclear_size, nuclear_value, rows, irregular, lumen_frac
):
    """Gland cross-sections: epithelium ring (cytoplasm), clear lumen and nuclei along the basement membrane."""
    n = len(centres)
    if n == 0:
        return
    radii = radius * rng.uniform(0.85, 1.15, size=n)
    aspect = rng.uniform(0.75, 1.25, size=n)
    canvas.blobs(
        canvas.draw_cytoplasm, centres, radii, 255, rng, irregular=irregular, aspect=aspect, vertices=12
    )
    canvas.blobs(
        canvas.draw_clear, centres, radii * lumen_frac, 255, rng, irregular=irregular * 1.5, aspect=aspect
    )
    diameter = 3 if nuclear_size * canvas.size < 2.2 else 5 if nuclear_size * canvas.size < 3.0 else 7
    for row in range(rows):
        ring = 0.82 - 0.16 * row
        count = max(8, int(2 * math.pi * radius * ring / (1.6 * nuclear_size)))
        theta = (
            rng.uniform(0, 2 * math.pi, size=(n, 1))
            + np.linspace(0, 2 * math.pi, count, endpoint=False)[None]
        )
        r = (radii[:, None] * ring) * (1.0 + 0.05 * rng.standard_normal((n, count)))
        pts = np.stack(
            [centres[:, :1] + r * np.cos(theta) * aspect[:, None], centres[:, 1:] + r * np.sin(theta)], -1
        )
        canvas.dots(pts.reshape(-1, 2), nuclear_value, diameter)


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random directions [n, 2]."""
    angle = rng.uniform(0.0, 2 * math.pi, size=n)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _scatter(rng, mask: np.ndarray, count: int, threshold: float = 0.5) -> np.ndarray:
    """Up to ``count`` random points [n, 2] where ``mask`` exceeds ``threshold``."""
    pts = rng.uniform(0.0, 1.0, size=(count, 2))
    return pts[_lookup(mask, pts) > threshold]


def _upsample(mask: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a low-resolution [r, r] float mask to [size, size]."""
    return np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def render(tissue: str, findings: dict[str, dict], rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw the H&E patch of a scene: uint8 [size, size, 3] RGB image.

    Cells are drawn at twice the output resolution and box-averaged down; region masks live at a fixed
    resolution, so every random draw except the final pixel noise is independent of ``size``.
    """
    big = size * _SUPERSAMPLE
    canvas = _Canvas(big)
    h_vec = _H_VECTOR + rng.normal(0.0, 0.04, size=3).astype(np.float32)
    e_vec = _E_VECTOR + rng.normal(0.0, 0.04, size=3).astype(np.float32)
    h_vec, e_vec = h_vec / np.linalg.norm(h_vec), e_vec / np.linalg.norm(e_vec)
    h_scale, e_scale = rng.uniform(0.8, 1.2), rng.uniform(0.75, 1.25)

    tumor = findings.get("Tumor")
    tumor_mask = _blob_mask(rng, _MASK_RES, rng.uniform(0.45, 0.85)) if tumor else np.zeros((_MASK_RES,) * 2)
    normal_mask = 1.0 - tumor_mask

    # Normal architecture, only outside the tumour.
    if tissue == "colon":
        spacing = rng.uniform(0.17, 0.2)
        crypts = _jittered_grid(rng, spacing, 0.12)
        crypts = crypts[_lookup(normal_mask, crypts) > 0.6]
        _glands(
            canvas,
            rng,
            crypts,
            spacing * 0.38,
            nuclear_size=0.008,
            nuclear_value=75,
            rows=1,
            irregular=0.06,
            lumen_frac=0.4,
        )
        goblets = crypts[:, None, :] + rng.normal(0.0, spacing * 0.2, size=(len(crypts), 6, 2))
        canvas.blobs(canvas.draw_clear, goblets.reshape(-1, 2), np.full(len(crypts) * 6, 0.011), 200, rng)
    elif tissue == "breast":
        fat = _blob_mask(rng, _MASK_RES, rng.uniform(0.25, 0.5)) * normal_mask
        spacing = rng.uniform(0.075, 0.095)
        cells = _jittered_grid(rng, spacing, 0.1)
        cells = cells[_lookup(fat, cells) > 0.5]
        canvas.blobs(
            canvas.draw_clear, cells, np.full(len(cells), 0.5 * spacing), 255, rng, irregular=0.08, vertices=7
        )
        ducts = _scatter(rng, normal_mask * (1.0 - fat), 8, 0.7)[:5]
        _glands(
            canvas,
            rng,
            ducts,
            0.045,
            nuclear_size=0.007,
            nuclear_value=80,
            rows=2,
            irregular=0.06,
            lumen_frac=0.35,
        )
    else:  # lung: open alveoli separated by thin septa
        spacing = rng.uniform(0.1, 0.13)
        alveoli = _jittered_grid(rng, spacing, 0.15)
        alveoli = alveoli[_lookup(normal_mask, alveoli) > 0.5]
        canvas.blobs(
            canvas.draw_clear,
            alveoli,
            spacing * rng.uniform(0.44, 0.5, size=len(alveoli)),
            255,
            rng,
            irregular=0.2,
            vertices=7,
        )
        septal = alveoli + 0.5 * spacing * _unit_vectors(rng, len(alveoli))
        canvas.blobs(canvas.draw_nuclei, septal, np.full(len(septal), 0.007), 80, rng, aspect=0.5, vertices=6)
    stromal = _scatter(rng, normal_mask, 90)
    canvas.blobs(
        canvas.draw_nuclei,
        stromal,
        rng.uniform(0.005, 0.008, size=len(stromal)),
        70,
        rng,
        aspect=0.4,
        vertices=6,
    )

    # Tumour: crowded irregular glands (low grade) or solid nests of pleomorphic cells with mitoses (high grade).
    if tumor and tumor["severity"] == "low":
        spacing = rng.uniform(0.11, 0.13)
        glands = _jittered_grid(rng, spacing, 0.2)
        glands = glands[_lookup(tumor_mask, glands) > 0.5]
        _glands(
            canvas,
            rng,
            glands,
            spacing * 0.5,
            nuclear_size=0.013,
            nuclear_value=95,
            rows=2,
            irregular=0.2,
            lumen_frac=0.38,
        )
    elif tumor:
        nests = tumor_mask * ramp(-smooth_noise(rng, 7, _MASK_RES) - 0.6, 0.3)
        sheet = Image.fromarray((nests * 230).astype(np.uint8)).resize((big, big), Image.BILINEAR)
        canvas.cytoplasm = ImageChops.lighter(canvas.cytoplasm, sheet)
        cells = _jittered_grid(rng, 0.032, 0.25)
        cells = cells[_lookup(nests, cells) > 0.5]
        canvas.blobs(
            canvas.draw_nuclei,
            cells,
            rng.uniform(0.011, 0.018, size=len(cells)),
            rng.uniform(85, 115, size=len(cells)),
            rng,
            irregular=0.35,
            aspect=rng.uniform(0.6, 1.0, size=len(cells)),
            vertices=7,
        )
        mitoses = cells[rng.permutation(len(cells))[: int(rng.integers(4, 9))]]
        canvas.blobs(
            canvas.draw_nuclei,
            mitoses,
            np.full(len(mitoses), 0.014),
            170,
            rng,
            irregular=0.6,
            aspect=0.35,
            vertices=6,
        )

    # Inflammation: patches of small round dark lymphocytes, with a lymphoid aggregate when heavier.
    inflammation = findings.get("Inflammation")
    if inflammation:
        level = {"mild": 1, "moderate": 2, "marked": 3}[inflammation["severity"]]
        infiltrate = np.zeros((_MASK_RES, _MASK_RES), np.float32)
        for _ in range(1 + 2 * level):
            np.maximum(infiltrate, _blob_mask(rng, _MASK_RES, rng.uniform(0.015, 0.04), 0.9), out=infiltrate)
        lymphocytes = [_scatter(rng, infiltrate, 900 * level), rng.uniform(0.0, 1.0, size=(60 * level, 2))]
        if level >= 2 and rng.random() < 0.6:
            centre, radius = rng.uniform(0.2, 0.8, size=2), rng.uniform(0.07, 0.1)
            lymphocytes.append(centre + radius * np.sqrt(rng.random((260, 1))) * _unit_vectors(rng, 260))
        canvas.dots(np.concatenate(lymphocytes), 135, 3)

    # Optical densities from the layers, box-averaged to the output size.
    nuclei = np.asarray(canvas.nuclei.reduce(_SUPERSAMPLE), dtype=np.float32) / 100.0
    cytoplasm = np.asarray(canvas.cytoplasm.reduce(_SUPERSAMPLE), dtype=np.float32) / 255.0
    clear = np.asarray(canvas.clear.reduce(_SUPERSAMPLE), dtype=np.float32) / 255.0
    fibres = smooth_noise(rng, (8, 28) if rng.random() < 0.5 else (28, 8), size)
    stroma_density = {"colon": 0.3, "breast": 0.45, "lung": 0.4}[tissue]
    stroma = (
        stroma_density
        * (0.88 + 0.12 * np.clip(fibres, -1.5, 1.5))
        * (0.92 + 0.08 * smooth_noise(rng, 24, size))
    )
    eosin = (stroma * (1.0 - cytoplasm) + 0.24 * cytoplasm) * (1.0 - 0.95 * clear) + 0.05 * nuclei
    haem = 0.03 + 0.06 * cytoplasm * (1.0 - clear) + nuclei

    necrosis = findings.get("Necrosis")
    if necrosis:  # pale, structureless eosinophilic debris with karyorrhectic nuclear dust
        coverage = rng.uniform(0.06, 0.12) if necrosis["severity"] == "focal" else rng.uniform(0.18, 0.3)
        region_low = _blob_mask(rng, _MASK_RES, coverage, 0.8) * ramp(0.5 - tumor_mask, 0.2)
        dust_points = _scatter(rng, region_low, 1500)
        dust_values = rng.uniform(0.5, 1.0, size=len(dust_points)).astype(np.float32)
        texture = smooth_noise(rng, 30, size)
        region = _upsample(region_low, size)
        debris = np.zeros((size, size), np.float32)
        idx = np.clip((dust_points * size).astype(int), 0, size - 1)
        debris[idx[:, 1], idx[:, 0]] = dust_values
        eosin = eosin * (1.0 - region) + region * (0.32 + 0.05 * texture)
        haem = haem * (1.0 - region) + region * (0.1 + debris)

    density = haem[..., None] * (h_scale * h_vec) + eosin[..., None] * (e_scale * e_vec)
    rgb = 255.0 * rng.uniform(0.95, 1.0) * np.power(10.0, -density)
    rgb += rng.normal(0.0, 1.0, size=rgb.shape).astype(np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------

_INTRO_NORMAL = {
    "colon": bank(
        "path.intro_colon",
        [
            "benign colonic mucosa with regularly spaced crypts in the lamina propria.",
            "the patch shows colonic mucosa with evenly spaced, round crypts and unremarkable stroma.",
            "this H&E section shows normal colonic crypts lined by goblet cells.",
        ],
        ["section of colonic mucosa displaying orderly crypt architecture."],
    ),
    "breast": bank(
        "path.intro_breast",
        [
            "benign breast tissue with scattered ducts in fibrous stroma and fat.",
            "the patch shows fibroadipose breast tissue with a few unremarkable ducts.",
            "breast parenchyma with bland ducts, dense collagenous stroma and adipose tissue.",
        ],
        ["fibrous breast stroma and mature fat surround small, orderly ducts."],
    ),
    "lung": bank(
        "path.intro_lung",
        [
            "benign lung parenchyma with thin alveolar septa and open airspaces.",
            "the image shows normal alveolar architecture with delicate septa.",
            "lung tissue with open alveoli lined by thin septa.",
        ],
        ["alveolar lung tissue with preserved, delicate septal architecture."],
    ),
}
_INTRO_LOW = bank(
    "path.intro_low",
    [
        "{tumour} forms crowded, irregular glands that replace the normal {tissue}.",
        "the {tissue} is replaced by back-to-back malignant glands.",
        "this H&E patch shows {tumour} with crowded, angulated glands.",
    ],
    ["infiltrating glands of {tumour} with a cribriform pattern."],
)
_INTRO_HIGH = bank(
    "path.intro_high",
    [
        "solid sheets of tumour cells with little gland formation infiltrate the stroma.",
        "the {tissue} is replaced by solid nests of carcinoma cells.",
        "the patch is dominated by sheets of {tumour} cells.",
    ],
    ["nests and sheets of malignant cells efface the normal architecture."],
)
_NUCLEI = {
    None: bank(
        "path.nuclei_normal",
        ["nuclei are small, round and uniform.", "the epithelial nuclei are bland and basally located."],
        ["nuclear features are bland throughout."],
    ),
    "low": bank(
        "path.nuclei_low",
        [
            "the nuclei are enlarged and oval with mild pleomorphism.",
            "tumour cells show mild nuclear atypia and rare mitoses.",
        ],
        ["nuclei are mildly enlarged with occasional mitoses."],
    ),
    "high": bank(
        "path.nuclei_high",
        [
            "marked nuclear pleomorphism and frequent mitotic figures are present.",
            "nuclei are large, hyperchromatic and pleomorphic with numerous mitoses.",
        ],
        ["bizarre, vesicular nuclei with brisk mitotic activity are seen."],
    ),
}
_GRADE = {
    "low": bank(
        "path.grade_low",
        [
            "features are consistent with a low-grade {tumour}.",
            "this is a well-differentiated, low-grade {tumour}.",
            "the tumour is low grade.",
        ],
        ["{tumour}, well differentiated (low grade)."],
    ),
    "high": bank(
        "path.grade_high",
        [
            "features are consistent with a high-grade {tumour}.",
            "this is a poorly differentiated, high-grade {tumour}.",
            "the tumour is high grade.",
        ],
        ["{tumour}, poorly differentiated (high grade)."],
    ),
}
_NECROSIS = {
    "focal": bank(
        "path.necrosis_focal",
        ["focal tumour necrosis is present.", "there is a small area of necrosis with nuclear debris."],
        ["a small focus of necrotic debris is seen."],
    ),
    "extensive": bank(
        "path.necrosis_extensive",
        [
            "extensive necrosis with karyorrhectic debris is seen.",
            "large areas of geographic necrosis are present.",
        ],
        ["necrotic debris fills a large part of the field."],
    ),
}
_NO_NECROSIS = bank(
    "path.no_necrosis",
    ["no necrosis is identified.", "there is no necrosis.", "necrosis is absent."],
    ["necrosis is not seen."],
)
_INFLAMMATION = {
    "mild": bank(
        "path.inflammation_mild",
        [
            "a mild lymphocytic infiltrate is present in the stroma.",
            "scattered lymphocytes are seen in the stroma.",
        ],
        ["the stroma contains a sparse inflammatory cell infiltrate."],
    ),
    "moderate": bank(
        "path.inflammation_moderate",
        [
            "moderate chronic inflammation with lymphoid aggregates.",
            "there is a moderate lymphoplasmacytic infiltrate.",
        ],
        ["a moderate inflammatory infiltrate surrounds the glands."],
    ),
    "marked": bank(
        "path.inflammation_marked",
        [
            "a dense inflammatory infiltrate is present.",
            "marked chronic inflammation with lymphoid aggregates is seen.",
        ],
        ["sheets of lymphocytes indicate marked inflammation."],
    ),
}
_NO_INFLAMMATION = bank(
    "path.no_inflammation",
    [
        "no significant inflammation.",
        "there is no significant inflammatory infiltrate.",
        "inflammation is not seen.",
    ],
    ["the stroma is free of inflammatory cells."],
)
_BENIGN = bank(
    "path.benign",
    ["no evidence of malignancy.", "negative for malignancy.", "no tumour is identified."],
    ["there is no evidence of carcinoma."],
)

MIN_WORDS, MAX_WORDS = 15, 45


def write_report(tissue: str, findings: dict[str, dict], rng: np.random.Generator, *, test: bool) -> str:
    """A PathGen-like descriptive paragraph about the patch; ``test`` enables held-out phrasings."""
    tumor = findings.get("Tumor")
    grade = tumor["severity"] if tumor else None
    slots = {"tissue": TISSUE_NAME[tissue], "tumour": tumor["type"] if tumor else ""}
    if tumor is None:
        intro = _INTRO_NORMAL[tissue].say(rng, test=test)
        closing = _BENIGN.say(rng, test=test)
    else:
        intro = (_INTRO_HIGH if grade == "high" else _INTRO_LOW).say(rng, test=test, **slots)
        closing = _GRADE[grade].say(rng, test=test, **slots)
    # (sentence, removal rank): positive findings are never dropped; negatives go first, then the nuclear detail.
    middle = [(_NUCLEI[grade].say(rng, test=test), 1)]
    necrosis, inflammation = findings.get("Necrosis"), findings.get("Inflammation")
    if necrosis:
        middle.append((_NECROSIS[necrosis["severity"]].say(rng, test=test), 0))
    elif tumor or rng.random() < 0.4:
        middle.append((_NO_NECROSIS.say(rng, test=test), 2))
    if inflammation:
        middle.append((_INFLAMMATION[inflammation["severity"]].say(rng, test=test), 0))
    elif rng.random() < 0.6:
        middle.append((_NO_INFLAMMATION.say(rng, test=test), 2))
    middle = [middle[i] for i in rng.permutation(len(middle))]

    def assemble() -> str:
        return " ".join([intro, *(text for text, _rank in middle), closing])

    for rank in (2, 2, 1):
        if word_count(assemble()) <= MAX_WORDS:
            break
        droppable = [item for item in middle if item[1] == rank]
        if droppable:
            middle.remove(droppable[-1])
    return assemble()
