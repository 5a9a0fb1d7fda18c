"""Procedural frontal chest radiographs and their radiology reports (the "chest_xray" synthetic domain).

A scene is a dict ``{finding_name: attributes}`` of CheXpert-named findings. :func:`sample_findings` draws one with
realistic co-occurrence limits, :func:`render` draws the radiograph and :func:`write_report` writes a
"FINDINGS: ... IMPRESSION: ..." report about it.

Images follow the radiological convention: the patient's right is on the image's left. Geometry is written in
patient coordinates ``X, Y`` in [0, 1] (``Y`` downwards) and is independent of the output size, so one scene drawn
at 64x64 and at 128x128 shows the same anatomy and findings.
"""

from __future__ import annotations

import math

import numpy as np

from medim.data._synthetic_fields import pixel_grid, ramp, smooth_noise
from medim.data._synthetic_text import bank, choice, sentence, weighted_choice, word_count

FINDING_WEIGHTS = {
    "Pleural Effusion": 0.22,
    "Cardiomegaly": 0.16,
    "Consolidation": 0.12,
    "Atelectasis": 0.12,
    "Lung Opacity": 0.11,
    "Lung Lesion": 0.10,
    "Edema": 0.09,
    "Pneumothorax": 0.08,
}
# Number of pathological findings per image: P(0) is the "No Finding" rate.
FINDING_COUNT_PROBS = (0.27, 0.38, 0.24, 0.11)
DEVICE_PROB = 0.2
DEVICE_TYPES = ("endotracheal tube", "central venous catheter", "enteric tube", "pacemaker")
ZONES = ("upper", "middle", "lower")
# Cardiothoracic ratio by cardiomegaly severity; normal hearts are drawn at 0.40-0.47.
CTR_BY_SEVERITY = {"mild": (0.56, 0.59), "moderate": (0.61, 0.65), "severe": (0.67, 0.72)}
# Height of the fluid line above the costophrenic angle, as a fraction of lung height: (medial, lateral).
EFFUSION_HEIGHT = {"small": (0.06, 0.22), "moderate": (0.22, 0.40), "large": (0.48, 0.66)}
# Fraction of the distance to the hilum the lung keeps when it collapses away from the chest wall.
PNEUMOTHORAX_KEEP = {"small": 0.80, "moderate": 0.68, "large": 0.52}
EDEMA_STRENGTH = {"mild": 0.45, "moderate": 0.6, "severe": 0.75}
LESION_RADIUS = {"nodule": (0.036, 0.046), "mass": (0.065, 0.085)}

_SIDE_SIGN = {"right": -1.0, "left": 1.0}  # patient right is image left

# ---------------------------------------------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------------------------------------------


def _sides(side: str) -> tuple[str, ...]:
    return ("right", "left") if side == "bilateral" else (side,)


def _propose(kind: str, rng: np.random.Generator) -> tuple[dict, set[tuple[str, str]]]:
    """Attributes for one finding and the (side, zone) cells of the lungs it covers."""
    attrs: dict = {"side": None, "severity": None, "location": None}
    cells: set[tuple[str, str]] = set()
    if kind == "Pleural Effusion":
        attrs["side"] = weighted_choice(rng, {"right": 0.38, "left": 0.32, "bilateral": 0.30})
        attrs["severity"] = weighted_choice(rng, {"small": 0.4, "moderate": 0.4, "large": 0.2})
        zones = {"small": ("lower",), "moderate": ("lower", "middle"), "large": ZONES}[attrs["severity"]]
        cells = {(s, z) for s in _sides(attrs["side"]) for z in zones}
    elif kind == "Pneumothorax":
        attrs["side"] = choice(rng, ("right", "left"))
        attrs["severity"] = weighted_choice(rng, {"small": 0.45, "moderate": 0.35, "large": 0.2})
        attrs["location"] = "apical"
        cells = {(attrs["side"], z) for z in ZONES}
    elif kind in ("Consolidation", "Lung Opacity", "Lung Lesion"):
        attrs["side"] = choice(rng, ("right", "left"))
        attrs["location"] = weighted_choice(rng, {"upper": 0.3, "middle": 0.3, "lower": 0.4})
        if kind == "Lung Lesion":
            attrs["type"] = weighted_choice(rng, {"nodule": 0.6, "mass": 0.4})
        cells = {(attrs["side"], attrs["location"])}
    elif kind == "Atelectasis":
        attrs["side"] = weighted_choice(rng, {"right": 0.35, "left": 0.35, "bilateral": 0.30})
        attrs["location"] = "lower"
        cells = {(s, "lower") for s in _sides(attrs["side"])}
    elif kind == "Edema":
        attrs["side"] = "bilateral"
        attrs["severity"] = weighted_choice(rng, {"mild": 0.4, "moderate": 0.4, "severe": 0.2})
        attrs["location"] = "perihilar"
        cells = {("right", "middle"), ("left", "middle")}
    elif kind == "Cardiomegaly":
        attrs["severity"] = weighted_choice(rng, {"mild": 0.45, "moderate": 0.35, "severe": 0.2})
    else:
        raise ValueError(f"unknown chest finding {kind!r}")
    return attrs, cells


# Findings that may cover the same lung cell: fluid and interstitial edema are drawn so both stay visible.
_SHAREABLE = {frozenset({"Edema", "Pleural Effusion"})}


def sample_findings(rng: np.random.Generator) -> dict[str, dict]:
    """Draw the findings of one radiograph: ``{name: {"side", "severity", "location"[, "type"]}}``.

    0-3 findings in all; an empty dict means "No Finding". Findings never overlap in a way that would hide one
    of them (for example a lower-zone consolidation under a large effusion on the same side).
    """
    count = int(rng.choice(len(FINDING_COUNT_PROBS), p=FINDING_COUNT_PROBS))
    findings: dict[str, dict] = {}
    owner: dict[tuple[str, str], str] = {}
    candidates = dict(FINDING_WEIGHTS)
    while len(findings) < count and candidates:
        kind = weighted_choice(rng, candidates)
        del candidates[kind]
        for _attempt in range(6):
            attrs, cells = _propose(kind, rng)
            if all(c not in owner or frozenset({owner[c], kind}) in _SHAREABLE for c in cells):
                findings[kind] = attrs
                owner.update(dict.fromkeys(cells, kind))
                break
    if len(findings) < 3 and rng.random() < DEVICE_PROB:
        findings["Support Devices"] = {
            "side": None,
            "severity": None,
            "location": None,
            "type": weighted_choice(rng, dict(zip(DEVICE_TYPES, (0.35, 0.3, 0.2, 0.15)))),
        }
    return findings


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def _segment_distance(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance [size, size] from every pixel to a polyline given as [n, 2] points (x, y)."""
    best = np.full(x.shape, np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
        np.minimum(best, np.hypot(x - ax - t * dx, y - ay - t * dy), out=best)
    return best


def _bezier(p0, p1, p2, n: int = 14) -> np.ndarray:
    """Points [n, 2] along a quadratic Bezier curve."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float32) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


class _Anatomy:
    """Scalar anatomy and acquisition parameters of one radiograph, drawn before any pixel work."""

    def __init__(self, rng: np.random.Generator, ctr: float):
        self.rotation = math.radians(float(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0)))
        self.scale = rng.uniform(0.93, 1.03)
        self.shift = (rng.normal(0.0, 0.012), rng.normal(0.0, 0.012))
        self.half_width = rng.uniform(0.35, 0.385)  # midline to lateral lung border
        self.apex = rng.uniform(0.10, 0.135)
        base_right = rng.uniform(0.74, 0.79)  # the right hemidiaphragm sits higher
        self.base = {"right": base_right, "left": base_right + rng.uniform(0.01, 0.035)}
        self.dome = rng.uniform(0.06, 0.09)
        self.medial = rng.uniform(0.035, 0.05)
        self.ctr = ctr
        self.soft_tissue = rng.uniform(0.46, 0.54)
        self.lung_dark = rng.uniform(0.30, 0.37)
        self.rib_contrast = rng.uniform(0.045, 0.075)
        self.marking_contrast = rng.uniform(0.07, 0.1)
        self.gastric_bubble = rng.random() < 0.6
        self.contrast = rng.uniform(0.9, 1.15)
        self.brightness = rng.normal(0.0, 0.03)
        self.gamma = rng.uniform(0.85, 1.2)
        self.grain = rng.uniform(0.008, 0.02)
        self.collimation = [rng.uniform(0.0, 0.06) if rng.random() < 0.6 else 0.0 for _ in range(4)]
        self.collimation_value = rng.uniform(0.0, 0.08) if rng.random() < 0.7 else rng.uniform(0.75, 0.9)
        self.marker = (rng.random() < 0.6, rng.random() < 0.5)  # (shown, on the right of the image)

    def lung_height(self, side: str) -> float:
        return self.base[side] - self.apex


def _lung_signed_distance(anat: _Anatomy, side: str, d: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Approximate signed distance [size, size] to one lung; ``d`` is the lateral distance from the midline."""
    w, med, base = anat.half_width, anat.medial, anat.base[side]
    centre, a, b = (w + med) / 2, (w - med) / 2, base - anat.apex
    ellipse = (np.hypot((d - centre) / a, (Y - base) / b) - 1.0) * min(a, b)
    dome_shape = np.clip(1.0 - ((d - centre + 0.02) / (a * 1.1)) ** 2, 0.0, 1.0)
    below_dome = Y - (base - anat.dome * dome_shape)
    return np.maximum(np.maximum(ellipse, med - d), below_dome)


def _zone_centre(anat: _Anatomy, side: str, zone: str, lateral: float) -> tuple[float, float]:
    """Patient coordinates (d, Y) of a lung zone; ``lateral`` in [0, 1] moves from mid-lung to the chest wall."""
    frac = {"upper": 0.25, "middle": 0.52, "lower": 0.76}[zone]
    centre = (anat.half_width + anat.medial) / 2
    return centre + lateral * (anat.half_width - centre) * 0.6, anat.apex + frac * anat.lung_height(side)


def render(findings: dict[str, dict], rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw the radiograph of a scene: uint8 [size, size] grey image.

    All random choices except the film grain are independent of ``size``; the grain does not depend on the
    findings, so rendering the same ``rng`` state with and without a finding differs only where it is drawn.
    """
    ctr_range = (
        CTR_BY_SEVERITY[findings["Cardiomegaly"]["severity"]] if "Cardiomegaly" in findings else (0.40, 0.47)
    )
    anat = _Anatomy(rng, rng.uniform(*ctr_range))
    # Film grain has its own stream so that adding or removing a finding changes only the finding's pixels.
    grain_rng = np.random.default_rng(rng.integers(2**63))
    px = 1.0 / size
    x, y = pixel_grid(size)
    # Image -> patient coordinates (small rotation, scale and shift of the patient on the detector).
    cos, sin = math.cos(anat.rotation), math.sin(anat.rotation)
    cx, cy = x - 0.5 - anat.shift[0], y - 0.5 - anat.shift[1]
    X = (cos * cx + sin * cy) / anat.scale + 0.5
    Y = (-sin * cx + cos * cy) / anat.scale + 0.5
    mid = np.abs(X - 0.5)

    # Heart: a half-ellipse sitting on the diaphragm, reaching further to the patient's left (image right);
    # its width is ctr * thorax width.
    heart_w = anat.ctr * anat.half_width
    widest = anat.base["left"] - 0.05
    height = widest - (0.45 - 0.3 * (anat.ctr - 0.44))
    lateral_axis = np.where(X > 0.5, 1.3 * heart_w, 0.7 * heart_w)
    heart_sd = (np.hypot((X - 0.5) / lateral_axis, (Y - widest) / height) - 1.0) * heart_w
    heart = ramp(heart_sd, 1.5 * px)

    lungs = {}
    lung_sd = {}
    for side, sign in _SIDE_SIGN.items():
        lung_sd[side] = _lung_signed_distance(anat, side, sign * (X - 0.5), Y)
        lungs[side] = ramp(lung_sd[side], 1.5 * px)
    lung_any = lungs["right"] + lungs["left"]
    # Findings fill a hemithorax; lung darkness is already confined to the lung, so the fill only needs the side.
    half = {side: ramp(-sign * (X - 0.5), 2 * px) for side, sign in _SIDE_SIGN.items()}
    # Fraction of each lung pixel's darkness cancelled by fluid or airspace disease (1 = soft-tissue density).
    fill = np.zeros_like(X)
    extra = np.zeros_like(X)  # additive brightness from findings (pleural line, devices, dense lesions)
    marking_keep = np.ones_like(X)
    ptx_dark = np.zeros_like(X)

    # Vessel-like lung markings: zero crossings of a smooth field, denser and thicker towards the hila.
    vessels = np.clip(1.0 - np.abs(smooth_noise(rng, 28, size)) / 0.45, 0.0, 1.0)
    hilum_dist = np.hypot(mid - 0.1, (Y - 0.45) * 0.8)
    markings = anat.marking_contrast * (0.35 + 0.65 * np.exp(-hilum_dist / 0.16)) * vessels
    markings += 0.12 * np.exp(-((hilum_dist / 0.045) ** 2))  # hilar vessels

    for kind, attrs in findings.items():
        side = attrs.get("side")
        if kind == "Pleural Effusion":
            for s in _sides(side):
                low, high = EFFUSION_HEIGHT[attrs["severity"]]
                d = _SIDE_SIGN[s] * (X - 0.5)
                across = np.clip((d - anat.medial) / (anat.half_width - anat.medial), 0.0, 1.0) ** 1.5
                level = anat.base[s] - anat.lung_height(s) * (low + (high - low) * across)  # meniscus
                fluid = ramp(level - Y, 0.008 + px)
                np.maximum(fill, fluid * half[s], out=fill)
        elif kind == "Pneumothorax":
            keep = PNEUMOTHORAX_KEEP[attrs["severity"]]
            d = _SIDE_SIGN[side] * (X - 0.5)
            hd, hy = 0.11, 0.47  # the lung collapses towards its hilum, away from apex and lateral wall
            d_c = np.where(d > hd, hd + (d - hd) / keep, d)
            y_c = np.where(Y < hy, hy + (Y - hy) / keep, hy + (Y - hy) / (0.85 + 0.15 * keep))
            collapsed_sd = _lung_signed_distance(anat, side, d_c, y_c) * keep
            collapsed = ramp(collapsed_sd, 1.5 * px)
            gap = lungs[side] * (1.0 - collapsed)
            np.maximum(ptx_dark, gap, out=ptx_dark)
            marking_keep *= 1.0 - gap
            line_w = max(0.006, 0.8 * px)
            interior = ramp(lung_sd[side] + 3 * px, px)
            extra += 0.2 * np.exp(-((collapsed_sd / line_w) ** 2)) * interior
            np.maximum(fill, (0.9 - keep) * collapsed * half[side], out=fill)  # the collapsed lung is denser
        elif kind in ("Consolidation", "Lung Opacity"):
            dense = kind == "Consolidation"
            dc, yc = _zone_centre(anat, side, attrs["location"], rng.uniform(-0.3, 0.6))
            radius = rng.uniform(0.09, 0.115) if dense else rng.uniform(0.105, 0.135)
            d = _SIDE_SIGN[side] * (X - 0.5)
            rel = np.hypot((d - dc) / 1.15, (Y - yc) / 0.9) / radius
            region = ramp(rel - 1.0 - 0.35 * smooth_noise(rng, 10, size), 0.3 if dense else 0.6) * half[side]
            texture = 0.8 + 0.2 * np.clip(smooth_noise(rng, 32, size), -1.0, 1.0)  # patchy, not uniform
            np.maximum(fill, (0.92 if dense else 0.7) * texture * region, out=fill)
            if dense:  # air bronchograms: a few dark branching tubes inside the consolidation
                for _ in range(2):
                    angle = rng.uniform(-0.6, 0.6) + (
                        0.0 if attrs["location"] == "middle" else np.sign(yc - 0.47)
                    )
                    tip = (dc + 0.08 * math.cos(angle), yc + 0.08 * math.sin(angle) * 0.8)
                    pts = _bezier((dc - 0.05, yc), ((dc + tip[0]) / 2, yc), tip, 6)
                    pts[:, 0] = 0.5 + _SIDE_SIGN[side] * pts[:, 0]
                    tube = np.exp(-((_segment_distance(X, Y, pts) / max(0.005, 0.7 * px)) ** 2))
                    extra -= 0.06 * tube * region**2
        elif kind == "Lung Lesion":
            lo, hi = LESION_RADIUS[attrs["type"]]
            radius = rng.uniform(lo, hi)
            dc, yc = _zone_centre(anat, side, attrs["location"], rng.uniform(0.1, 0.5))
            yc = min(yc, anat.base[side] - anat.dome - radius)  # keep it above the diaphragm dome
            d = _SIDE_SIGN[side] * (X - 0.5)
            lobulation = 0.08 * smooth_noise(rng, 12, size) if attrs["type"] == "mass" else 0.0
            rel = np.hypot(d - dc, Y - yc) / radius - 1.0 + lobulation
            lesion = ramp(rel * radius, 1.5 * px)
            np.maximum(fill, lesion, out=fill)
            extra += 0.05 * lesion * (1.0 - np.clip(rel + 1.0, 0.0, 1.0) ** 2)  # denser centre
        elif kind == "Edema":
            strength = EDEMA_STRENGTH[attrs["severity"]]
            spread = 0.14 + 0.14 * strength
            haze = strength * (0.25 + 0.75 * np.exp(-((hilum_dist / spread) ** 2)))  # bat-wing
            haze *= 0.85 + 0.15 * smooth_noise(rng, 16, size)
            np.maximum(fill, haze, out=fill)
            marking_keep *= 1.0 - 0.5 * strength  # vessels become indistinct
        elif kind == "Atelectasis":
            for s in _sides(side):
                d = _SIDE_SIGN[s] * (X - 0.5)
                dc, _ = _zone_centre(anat, s, "lower", rng.uniform(-0.3, 0.3))
                yc = anat.base[s] - anat.dome - rng.uniform(0.04, 0.07)
                half_len, tilt = rng.uniform(0.07, 0.1), math.radians(rng.uniform(-12, 15))
                p0 = (0.5 + _SIDE_SIGN[s] * (dc - half_len * math.cos(tilt)), yc - half_len * math.sin(tilt))
                p1 = (0.5 + _SIDE_SIGN[s] * (dc + half_len * math.cos(tilt)), yc + half_len * math.sin(tilt))
                band = _segment_distance(X, Y, np.array([p0, p1], dtype=np.float32))
                thickness = max(rng.uniform(0.009, 0.013), 0.9 * px)
                np.maximum(fill, 0.95 * ramp(band - thickness, 1.5 * px) * half[s], out=fill)

    body_half = (
        anat.half_width + 0.075 + 0.14 * np.clip((0.2 - Y) / 0.12, 0.0, 1.0)
    )  # widening to the shoulders
    body = ramp(mid - body_half, 3 * px)
    image = 0.05 + (anat.soft_tissue - 0.05) * body
    image += 0.08 * ramp(mid - 0.055, 3 * px) * ramp(0.08 - Y, 4 * px)  # spine and mediastinum
    image -= 0.09 * ramp(mid - 0.013, 1.5 * px) * ramp(Y - 0.34, 2 * px) * ramp(0.02 - Y, 2 * px)  # trachea
    image += 0.06 * np.exp(-((np.hypot((X - 0.565) / 1.1, Y - 0.33) / 0.035) ** 2))  # aortic knob
    lung_eff = lung_any * (1.0 - 0.9 * heart)
    basal_soft_tissue = 1.0 - 0.2 * np.clip((Y - 0.45) / 0.35, 0.0, 1.0)  # breasts and diaphragm overlap
    image -= anat.lung_dark * basal_soft_tissue * lung_eff * (1.0 - fill)
    image += markings * marking_keep * lung_eff * (1.0 - fill)
    image -= 0.13 * ptx_dark
    if anat.gastric_bubble:
        gas = np.hypot((X - 0.64) / 1.4, Y - anat.base["left"] - 0.05) - 0.035
        image -= 0.12 * ramp(gas, 3 * px) * (1.0 - fill)

    # Ribs: periodic bands along curved rib coordinates (posterior ribs sag laterally, anterior ribs run
    # down towards the midline); clavicles: two tilted bars.
    lowest = max(anat.base.values())
    spacing = (lowest - anat.apex) / 8.5
    in_chest = ramp(mid - anat.half_width - 0.03, 3 * px) * ramp(anat.apex - 0.03 - Y, 3 * px)
    in_chest *= ramp(Y - lowest - 0.03, 3 * px) * body
    posterior = np.abs(np.mod((Y - anat.apex - 0.6 * (mid - 0.05) ** 2) / spacing, 1.0) - 0.5)
    anterior = np.abs(np.mod((Y - anat.apex + 0.45 * mid) / (1.3 * spacing), 1.0) - 0.5)
    ribs = ramp(posterior - 0.2, 0.1) + 0.45 * ramp(anterior - 0.16, 0.1) * ramp(0.12 - mid, 0.04)
    image += (
        anat.rib_contrast * ribs * in_chest * (0.25 * (1.0 - heart) + 0.75 * lung_eff * (1.0 - 0.6 * fill))
    )
    clavicle = _segment_distance(
        mid, Y, np.array([[0.03, 0.2], [0.18, 0.16], [0.33, 0.125]], dtype=np.float32)
    )
    image += 0.12 * ramp(clavicle - 0.012, 2 * px)

    if "Support Devices" in findings:
        extra += _draw_device(findings["Support Devices"]["type"], anat, X, Y, px)
    image += extra

    # Acquisition: exposure, gamma, collimation borders, laterality marker, film grain.
    image = np.clip(image * anat.contrast + anat.brightness, 0.0, 1.0) ** anat.gamma
    left, right, top, bottom = anat.collimation
    outside = (x < left) | (x > 1 - right) | (y < top) | (y > 1 - bottom)
    image = np.where(outside, anat.collimation_value, image)
    shown, on_right = anat.marker
    if shown:
        mx = 0.86 if on_right else 0.06
        image = np.where((np.abs(x - mx - 0.02) < 0.02) & (np.abs(y - 0.08) < 0.025), 0.95, image)
    image = image + anat.grain * grain_rng.standard_normal(image.shape, dtype=np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _draw_device(kind: str, anat: _Anatomy, X: np.ndarray, Y: np.ndarray, px: float) -> np.ndarray:
    """Bright radio-opaque line(s) of one support device [size, size]."""
    carina = 0.34
    width = max(0.006, 0.8 * px)
    if kind == "endotracheal tube":
        paths = [np.array([[0.5, -0.05], [0.502, carina - 0.06]], dtype=np.float32)]
    elif kind == "central venous catheter":  # right internal jugular, tip in the SVC
        paths = [_bezier((0.33, -0.02), (0.44, 0.14), (0.465, 0.36))]
    elif kind == "enteric tube":
        stomach = anat.base["left"] + 0.07
        paths = [
            np.array([[0.505, -0.05], [0.51, 0.55]], dtype=np.float32),
            _bezier((0.51, 0.55), (0.52, stomach), (0.64, stomach + 0.02)),
        ]
    elif kind == "pacemaker":  # generator in the left upper chest, leads into the right heart
        box = (np.abs(X - 0.76) < 0.04) & (np.abs(Y - 0.16) < 0.028)
        leads = [
            _bezier((0.74, 0.17), (0.5, 0.2), (0.47, 0.52)),
            _bezier((0.74, 0.18), (0.52, 0.3), (0.53, 0.66)),
        ]
        return 0.5 * box + sum(0.45 * np.exp(-((_segment_distance(X, Y, p) / width) ** 2)) for p in leads)
    else:
        raise ValueError(f"unknown support device {kind!r}")
    return sum(0.5 * np.exp(-((_segment_distance(X, Y, p) / (1.3 * width)) ** 2)) for p in paths)


# ---------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------

_LOBES = {
    ("right", "upper"): "right upper lobe",
    ("right", "middle"): "right middle lobe",
    ("right", "lower"): "right lower lobe",
    ("left", "upper"): "left upper lobe",
    ("left", "middle"): "lingula",
    ("left", "lower"): "left lower lobe",
}
_REGIONS = {
    "upper": ("{side} upper lung", "{side} apex", "{side} upper lung zone"),
    "middle": ("{side} mid lung", "{side} midlung zone", "{side} mid lung field"),
    "lower": ("{side} lung base", "{side} lower lung", "{side} base", "{side} lower lung zone"),
}
_SEVERITY_ADJ = {
    "small": ("small",),
    "moderate": ("moderate", "moderate-sized"),
    "large": ("large",),
    "mild": ("mild",),
    "severe": ("severe", "marked"),
}
_SEVERITY_ADV = {"mild": ("mildly",), "moderate": ("moderately",), "severe": ("markedly", "severely")}

_EFFUSION = bank(
    "chest.effusion",
    [
        "{sev} {side} pleural effusion.",
        "there is a {sev} {side} pleural effusion.",
        "{sev} {side} pleural effusion is present.",
        "a {sev} {side} effusion is seen.",
        "{side} pleural effusion, {sev} in size.",
        "{sev} {side} pleural effusion is noted.",
    ],
    ["{sev} amount of {side} pleural fluid.", "{sev} {side} layering pleural effusion."],
)
_EFFUSION_SMALL = bank(
    "chest.effusion_small",
    [
        "blunting of the {side} costophrenic angle from a small effusion.",
        "small {side} effusion blunts the costophrenic angle.",
    ],
    ["trace {side} pleural effusion with costophrenic angle blunting."],
)
_EFFUSION_BILATERAL = bank(
    "chest.effusion_bilateral",
    [
        "{sev} bilateral pleural effusions.",
        "there are {sev} bilateral effusions.",
        "bilateral {sev} pleural effusions are present.",
    ],
    ["{sev} pleural effusions on both sides."],
)
_EFFUSION_IMP = bank("chest.effusion_imp", ["{sev} {side} pleural effusion.", "{sev} {side} effusion."])
_PTX = bank(
    "chest.pneumothorax",
    [
        "{sev} {side} pneumothorax.",
        "there is a {sev} {side} pneumothorax.",
        "{sev} {side} apical pneumothorax is present.",
        "a {sev} {side} pneumothorax is seen with a visible pleural line.",
        "{side} pneumothorax, {sev} in size.",
    ],
    [
        "{side}-sided pneumothorax of {sev} size.",
        "{sev} {side} pneumothorax with a visible visceral pleural edge.",
    ],
)
_PTX_IMP = bank("chest.pneumothorax_imp", ["{sev} {side} pneumothorax.", "{side} pneumothorax, {sev}."])
_CONSOLIDATION = bank(
    "chest.consolidation",
    [
        "focal consolidation in the {lobe}.",
        "there is consolidation in the {lobe}.",
        "{lobe} consolidation.",
        "dense consolidation is seen in the {region}.",
        "airspace consolidation in the {region}.",
    ],
    ["consolidation involving the {lobe}.", "{lobe} airspace consolidation with air bronchograms."],
)
_CONSOLIDATION_IMP = bank(
    "chest.consolidation_imp", ["{lobe} consolidation.", "consolidation in the {region}."]
)
_OPACITY = bank(
    "chest.opacity",
    [
        "patchy opacity in the {region}.",
        "there is a hazy opacity in the {region}.",
        "ill-defined opacity at the {region}.",
        "{region} airspace opacity.",
        "new patchy opacity in the {region}.",
    ],
    ["area of increased opacity projecting over the {region}.", "subtle infiltrate in the {region}."],
)
_OPACITY_IMP = bank("chest.opacity_imp", ["{region} opacity.", "patchy {region} opacity."])
_LESION = bank(
    "chest.lesion",
    [
        "{size} cm {kind} in the {region}.",
        "there is a {size} cm {side} {zone} lung {kind}.",
        "rounded {kind} in the {region} measuring {size} cm.",
        "a well-circumscribed {kind} projects over the {region}.",
        "{side} {zone} lung {kind}.",
    ],
    [
        "spiculated {kind} in the {region}, measuring approximately {size} cm.",
        "focal {kind} seen over the {region}.",
    ],
)
_LESION_IMP = bank("chest.lesion_imp", ["{region} {kind}.", "{side} {zone} lung {kind}; CT recommended."])
_EDEMA = bank(
    "chest.edema",
    [
        "{sev} pulmonary edema.",
        "there is {sev} pulmonary edema.",
        "{sev} interstitial edema with perihilar haziness.",
        "findings are consistent with {sev} pulmonary edema.",
        "{sev} bilateral perihilar edema.",
    ],
    ["pulmonary vascular congestion with {sev} edema.", "{sev} perihilar airspace edema."],
)
_EDEMA_IMP = bank("chest.edema_imp", ["{sev} pulmonary edema.", "{sev} edema."])
_ATELECTASIS = bank(
    "chest.atelectasis",
    [
        "{side} basilar atelectasis.",
        "plate-like atelectasis at the {side} base.",
        "linear atelectasis in the {side} lower lung.",
        "there is {side} basilar atelectasis.",
        "subsegmental atelectasis at the {side} lung base.",
    ],
    ["discoid atelectasis at the {side} base.", "{side} basilar atelectasis, streaky in appearance."],
)
_ATELECTASIS_BILATERAL = bank(
    "chest.atelectasis_bilateral",
    ["bibasilar atelectasis.", "plate-like atelectasis at both bases.", "bibasilar linear atelectasis."],
    ["streaky atelectasis at both lung bases."],
)
_ATELECTASIS_IMP = bank("chest.atelectasis_imp", ["{side} basilar atelectasis.", "{side} base atelectasis."])
_CARDIOMEGALY = bank(
    "chest.cardiomegaly",
    [
        "{sev} cardiomegaly.",
        "the heart is {adv} enlarged.",
        "there is {sev} cardiomegaly.",
        "{sev} enlargement of the cardiac silhouette.",
        "the cardiac silhouette is {adv} enlarged.",
    ],
    ["{adv} increased heart size.", "cardiac enlargement, {sev}."],
)
_CARDIOMEGALY_IMP = bank("chest.cardiomegaly_imp", ["{sev} cardiomegaly.", "cardiomegaly, {sev}."])
_DEVICES = {
    "endotracheal tube": bank(
        "chest.device_ett",
        [
            "endotracheal tube terminates {cm} cm above the carina.",
            "ET tube in standard position.",
            "the endotracheal tube tip is {cm} cm above the carina.",
        ],
        ["endotracheal tube is well positioned."],
    ),
    "central venous catheter": bank(
        "chest.device_cvc",
        [
            "right internal jugular central venous catheter terminates in the SVC.",
            "right IJ line with tip in the lower SVC.",
            "right-sided central line ends in the SVC.",
        ],
        ["right jugular venous catheter tip projects over the SVC."],
    ),
    "enteric tube": bank(
        "chest.device_enteric",
        [
            "enteric tube courses below the diaphragm.",
            "nasogastric tube tip is in the stomach.",
            "NG tube terminates in the stomach.",
        ],
        ["feeding tube passes into the stomach."],
    ),
    "pacemaker": bank(
        "chest.device_pacemaker",
        [
            "left chest wall pacemaker with leads in the right atrium and ventricle.",
            "left-sided pacemaker with leads in standard position.",
            "dual-chamber pacemaker in place.",
        ],
        ["left pectoral cardiac device with intact leads."],
    ),
}
_DEVICE_IMP = bank(
    "chest.device_imp",
    ["{device} in standard position.", "{device} in appropriate position."],
)
_DEVICE_SHORT = {
    "endotracheal tube": "endotracheal tube",
    "central venous catheter": "right IJ catheter",
    "enteric tube": "enteric tube",
    "pacemaker": "pacemaker",
}

_PARENCHYMA = {"Consolidation", "Lung Opacity", "Lung Lesion", "Edema", "Atelectasis"}
_LUNGS_CLEAR = bank(
    "chest.lungs_clear",
    ["the lungs are clear.", "lungs are clear bilaterally.", "the lungs are well expanded and clear."],
    ["both lungs are clear."],
)
# Negative and normal statements: (bank, findings that must be absent for the statement to be true, how often it
# is chosen). A report uses at most one statement per finding; "the lungs are clear" speaks only for the lung
# parenchyma.
_NEGATIVES = [
    (
        bank(
            "chest.neg_eff_ptx",
            [
                "no pleural effusion or pneumothorax.",
                "there is no pleural effusion or pneumothorax.",
                "no pneumothorax or pleural effusion.",
            ],
            ["the pleural spaces are clear without effusion or pneumothorax."],
        ),
        {"Pleural Effusion", "Pneumothorax"},
        3,
    ),
    (
        bank(
            "chest.neg_effusion",
            [
                "no pleural effusion.",
                "no effusion.",
                "there is no pleural effusion.",
                "the costophrenic angles are sharp.",
            ],
            ["no pleural fluid is seen."],
        ),
        {"Pleural Effusion"},
        1.5,
    ),
    (
        bank(
            "chest.neg_ptx",
            ["no pneumothorax.", "there is no pneumothorax.", "no evidence of pneumothorax."],
            ["pneumothorax is not seen."],
        ),
        {"Pneumothorax"},
        2,
    ),
    (
        bank(
            "chest.neg_consolidation",
            ["no focal consolidation.", "there is no focal consolidation.", "no consolidation is seen."],
            ["no airspace consolidation is identified."],
        ),
        {"Consolidation"},
        2,
    ),
    (
        bank(
            "chest.neg_cons_eff_ptx",
            [
                "no focal consolidation, pleural effusion, or pneumothorax.",
                "no consolidation, effusion, or pneumothorax.",
            ],
            ["there is no focal airspace consolidation, effusion, or pneumothorax."],
        ),
        {"Consolidation", "Pleural Effusion", "Pneumothorax"},
        2,
    ),
    (_LUNGS_CLEAR, _PARENCHYMA | {"Pneumothorax", "Pleural Effusion"}, 2.5),
    (
        bank(
            "chest.neg_edema",
            [
                "no pulmonary edema.",
                "no evidence of pulmonary edema.",
                "there is no pulmonary vascular congestion or edema.",
            ],
            ["pulmonary vasculature is normal without edema."],
        ),
        {"Edema"},
        1.5,
    ),
    (
        bank(
            "chest.neg_cardiomegaly",
            [
                "heart size is normal.",
                "the cardiac silhouette is normal in size.",
                "normal heart size.",
                "the cardiomediastinal silhouette is within normal limits.",
                "heart size is within normal limits.",
            ],
            ["the heart is not enlarged."],
        ),
        {"Cardiomegaly"},
        3,
    ),
    (
        bank(
            "chest.neg_lesion",
            ["no suspicious pulmonary nodule.", "no focal lung lesion.", "no pulmonary nodules or masses."],
            ["no discrete nodule or mass is identified."],
        ),
        {"Lung Lesion"},
        0.8,
    ),
    (bank("chest.neg_opacity", ["no focal opacity.", "no airspace opacity."]), {"Lung Opacity"}, 0.6),
    (bank("chest.neg_atelectasis", ["no atelectasis.", "no focal atelectasis."]), {"Atelectasis"}, 0.3),
]
_OTHERWISE_CLEAR = bank(
    "chest.otherwise_clear", ["the lungs are otherwise clear.", "otherwise, the lungs are clear."]
)
_FILLERS = bank(
    "chest.filler",
    [
        "the mediastinal contours are unremarkable.",
        "no acute osseous abnormality.",
        "osseous structures are intact.",
        "hilar contours are normal.",
        "the visualized upper abdomen is unremarkable.",
    ],
    ["no displaced rib fracture is seen."],
)
_NORMAL_IMP = bank(
    "chest.normal_imp",
    [
        "no acute cardiopulmonary process.",
        "no acute cardiopulmonary abnormality.",
        "normal chest radiograph.",
    ],
    ["no acute intrathoracic process."],
)

MIN_WORDS, MAX_WORDS = 14, 45


def _sev(rng, severity: str) -> str:
    return choice(rng, _SEVERITY_ADJ[severity])


def _region(rng, side: str, zone: str) -> str:
    return choice(rng, _REGIONS[zone]).format(side=side)


def _describe(kind: str, attrs: dict, rng: np.random.Generator, test: bool) -> tuple[str, str]:
    """(findings sentence, impression sentence) for one positive finding."""
    side, sev_word = attrs.get("side"), attrs.get("severity")
    if kind == "Pleural Effusion":
        sev = _sev(rng, sev_word)
        if side == "bilateral":
            text = _EFFUSION_BILATERAL.say(rng, test=test, sev=sev)
            return text, sentence(f"{sev} bilateral pleural effusions")
        if sev_word == "small" and rng.random() < 0.3:
            text = _EFFUSION_SMALL.say(rng, test=test, side=side)
        else:
            text = _EFFUSION.say(rng, test=test, sev=sev, side=side)
        return text, _EFFUSION_IMP.say(rng, test=test, sev=sev, side=side)
    if kind == "Pneumothorax":
        sev = _sev(rng, sev_word)
        return _PTX.say(rng, test=test, sev=sev, side=side), _PTX_IMP.say(rng, test=test, sev=sev, side=side)
    if kind in ("Consolidation", "Lung Opacity", "Lung Lesion"):
        zone = attrs["location"]
        slots = {"side": side, "zone": zone, "lobe": _LOBES[(side, zone)], "region": _region(rng, side, zone)}
        if kind == "Consolidation":
            return _CONSOLIDATION.say(rng, test=test, **slots), _CONSOLIDATION_IMP.say(
                rng, test=test, **slots
            )
        if kind == "Lung Opacity":
            return _OPACITY.say(rng, test=test, **slots), _OPACITY_IMP.say(rng, test=test, **slots)
        lo, hi = (1.2, 2.6) if attrs["type"] == "nodule" else (3.5, 5.5)
        slots.update(kind=attrs["type"], size=f"{rng.uniform(lo, hi):.1f}")
        return _LESION.say(rng, test=test, **slots), _LESION_IMP.say(rng, test=test, **slots)
    if kind == "Edema":
        sev = _sev(rng, sev_word)
        return _EDEMA.say(rng, test=test, sev=sev), _EDEMA_IMP.say(rng, test=test, sev=sev)
    if kind == "Atelectasis":
        if side == "bilateral":
            return _ATELECTASIS_BILATERAL.say(rng, test=test), sentence("bibasilar atelectasis")
        return _ATELECTASIS.say(rng, test=test, side=side), _ATELECTASIS_IMP.say(rng, test=test, side=side)
    if kind == "Cardiomegaly":
        sev, adv = _sev(rng, sev_word), choice(rng, _SEVERITY_ADV[sev_word])
        return _CARDIOMEGALY.say(rng, test=test, sev=sev, adv=adv), _CARDIOMEGALY_IMP.say(
            rng, test=test, sev=sev
        )
    if kind == "Support Devices":
        device = attrs["type"]
        text = _DEVICES[device].say(rng, test=test, cm=str(int(rng.integers(3, 7))))
        return text, _DEVICE_IMP.say(rng, test=test, device=_DEVICE_SHORT[device])
    raise ValueError(f"unknown chest finding {kind!r}")


def write_report(findings: dict[str, dict], rng: np.random.Generator, *, test: bool) -> str:
    """A concise radiology report ("FINDINGS: ... IMPRESSION: ...") consistent with ``findings``.

    ``test`` enables the held-out phrasings reserved for the test split.
    """
    positives, impressions = [], []
    for kind in rng.permutation(list(findings)):
        text, impression = _describe(str(kind), findings[kind], rng, test)
        positives.append(text)
        if kind != "Support Devices" or rng.random() < 0.4:
            impressions.append(impression)
    absent = set(FINDING_WEIGHTS) - set(findings)
    # Negative statements in a weighted random order, at most one per finding.
    weights = np.array([weight for _bank, _needs, weight in _NEGATIVES])
    candidates, covered = [], set()
    for i in np.argsort(-np.log(rng.random(len(_NEGATIVES))) / weights):
        statement, needs, _weight = _NEGATIVES[i]
        topics = needs & _PARENCHYMA if statement is _LUNGS_CLEAR else needs
        if needs <= absent and not topics & covered:
            candidates.append(statement)
            covered |= topics
    wanted = int(rng.integers(2, 5))
    picked = [b.say(rng, test=test) for b in candidates[:wanted]]
    closing = []  # statements that read naturally only after the positive findings
    if positives and absent >= _PARENCHYMA and _LUNGS_CLEAR not in candidates[:wanted] and rng.random() < 0.3:
        closing.append(_OTHERWISE_CLEAR.say(rng, test=test))
    if rng.random() < 0.35:
        closing.append(_FILLERS.say(rng, test=test))
    if not impressions:
        impressions.append(_NORMAL_IMP.say(rng, test=test))
    order_seed = int(rng.integers(2**32)) if rng.random() < 0.5 else None

    def assemble(negs: list[str]) -> str:
        body = positives + negs
        if order_seed is not None:  # mixed order; otherwise positive findings first
            body = [body[i] for i in np.random.default_rng(order_seed).permutation(len(body))]
        return f"FINDINGS: {' '.join(body + closing)} IMPRESSION: {' '.join(impressions)}"

    # Drop closing and negative statements (never positives) until the report fits the word budget.
    while (picked or closing) and word_count(assemble(picked)) > MAX_WORDS:
        (closing or picked).pop()
    for statement in candidates[wanted:]:
        if word_count(assemble(picked)) >= MIN_WORDS:
            break
        picked.append(statement.say(rng, test=test))
    return assemble(picked)
