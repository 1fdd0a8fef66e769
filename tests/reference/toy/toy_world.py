"""The toy world: frames of simple shapes over a smooth background, edits whose
targets are exactly computable, and videos with known per-frame shape masks.

Used by train_toy_model.py (training data), evaluate_toy_model.py (acceptance),
make_toy_clips.py (test clips) and bench/consistency (benchmark videos). Only
numpy: every image is float32 RGB in [0, 1], shape [H, W, 3].

Instructions (INSTRUCTIONS) and their targets:
- "make it grayscale": deterministic, every pixel -> its Rec.601 luma.
- "paint the shapes": ambiguous, every shape -> ONE colour drawn from PALETTE
  (4 colours), a different draw per training pair; the background is kept.
- "paint the circle black": local, only the circle changes.
"""

import math

import numpy as np

GRAYSCALE = "make it grayscale"
PAINT_SHAPES = "paint the shapes"
PAINT_CIRCLE = "paint the circle black"
INSTRUCTIONS = (GRAYSCALE, PAINT_SHAPES, PAINT_CIRCLE)

PALETTE = np.array([
    [0.90, 0.10, 0.10],  # red
    [0.10, 0.75, 0.15],  # green
    [0.10, 0.25, 0.90],  # blue
    [0.95, 0.85, 0.10],  # yellow
], dtype=np.float32)
PALETTE_NAMES = ("red", "green", "blue", "yellow")
CIRCLE_TARGET = np.array([0.0, 0.0, 0.0], dtype=np.float32)
CLEAN_DISTANCE = 0.2  # a shape is "clean" when its mean colour is this close (RGB, L2) to a palette colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

KINDS = ("circle", "square", "triangle")
SUPERSAMPLE = 4  # anti-aliasing: coverage is measured on a 4x4 grid per pixel


def hsv_to_rgb(h, s, v):
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def coverage(kind, cx, cy, size, angle, h, w):
    """Fraction of each pixel covered by the shape, [h, w] in [0, 1].

    size: circle radius, half the square's side, the triangle's circumradius (pixels).
    """
    n = SUPERSAMPLE
    ys = (np.arange(h * n, dtype=np.float32) + 0.5) / n
    xs = (np.arange(w * n, dtype=np.float32) + 0.5) / n
    x, y = np.meshgrid(xs - cx, ys - cy)
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y  # shape-local coordinates
    if kind == "circle":
        inside = u * u + v * v <= size * size
    elif kind == "square":
        inside = (np.abs(u) <= size) & (np.abs(v) <= size)
    else:  # equilateral triangle: three half-planes at distance size/2 from the centre
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = 2 * math.pi * k / 3 + math.pi / 2
            inside &= (u * math.cos(a) + v * math.sin(a)) <= size / 2
    return inside.reshape(h, n, w, n).mean(axis=(1, 3)).astype(np.float32)


def background(h, w, bg, shift=(0.0, 0.0)):
    """Smooth background: a gradient between two colours plus a gentle wave.

    shift moves the pattern (the camera pan of a video), in pixels.
    """
    ys = np.arange(h, dtype=np.float32) + 0.5 + shift[1]
    xs = np.arange(w, dtype=np.float32) + 0.5 + shift[0]
    x, y = np.meshgrid(xs, ys)
    d = math.cos(bg["angle"]) * x + math.sin(bg["angle"]) * y
    t = 0.5 + 0.5 * np.sin(d * bg["freq"] + bg["phase"])
    t = t[..., None]
    return (bg["c0"] * (1 - t) + bg["c1"] * t).astype(np.float32)


def random_background(rng):
    def colour():
        return hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.45), rng.uniform(0.4, 0.85))
    return {"c0": colour(), "c1": colour(), "angle": rng.uniform(0, 2 * math.pi),
            "freq": rng.uniform(0.03, 0.09), "phase": rng.uniform(0, 2 * math.pi)}


def random_shape_colour(rng):
    return hsv_to_rgb(rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))


def compose(bg_img, shapes, colours):
    """Shapes painted over the background in order; shapes: list of dicts with 'alpha'."""
    img = bg_img.copy()
    for s, col in zip(shapes, colours):
        a = s["alpha"][..., None]
        img = img * (1 - a) + np.asarray(col, dtype=np.float32) * a
    return img


def grayscale(img):
    y = img @ LUMA
    return np.repeat(y[..., None], 3, axis=-1).astype(np.float32)


class Scene:
    """One frame: background + shapes (each with kind, colour and coverage)."""

    def __init__(self, bg_img, shapes):
        self.bg_img = bg_img
        self.shapes = shapes  # dicts: kind, colour, alpha [h, w]

    def source(self):
        return compose(self.bg_img, self.shapes, [s["colour"] for s in self.shapes])

    def target(self, instruction, palette_index=0):
        if instruction == GRAYSCALE:
            return grayscale(self.source())
        if instruction == PAINT_SHAPES:
            return compose(self.bg_img, self.shapes, [PALETTE[palette_index]] * len(self.shapes))
        if instruction == PAINT_CIRCLE:
            cols = [CIRCLE_TARGET if s["kind"] == "circle" else s["colour"] for s in self.shapes]
            return compose(self.bg_img, self.shapes, cols)
        raise ValueError(f"unknown instruction {instruction!r}")

    def has(self, kind):
        return any(s["kind"] == kind for s in self.shapes)

    def mask(self, kind=None):
        """Union of the shapes' coverage (or one kind's), [h, w] in [0, 1]."""
        m = np.zeros(self.bg_img.shape[:2], dtype=np.float32)
        for s in self.shapes:
            if kind is None or s["kind"] == kind:
                m = np.maximum(m, s["alpha"])
        return m

    def labels(self):
        """Per-pixel label: 0 background, 1 + KINDS index where a shape covers >= half the pixel."""
        lab = np.zeros(self.bg_img.shape[:2], dtype=np.uint8)
        for s in self.shapes:
            lab[s["alpha"] >= 0.5] = 1 + KINDS.index(s["kind"])
        return lab


def random_scene(rng, h=64, w=64, need_circle=False):
    """A still for training: 1-3 shapes of distinct kinds, not overlapping."""
    n = int(rng.integers(1, 4))
    kinds = list(rng.permutation(KINDS)[:n])
    if need_circle and "circle" not in kinds:
        kinds[0] = "circle"
    shapes, placed = [], []
    for kind in kinds:
        for _ in range(100):
            size = rng.uniform(6.0, 12.0)
            cx, cy = rng.uniform(size * 0.6, w - size * 0.6), rng.uniform(size * 0.6, h - size * 0.6)
            if all(math.hypot(cx - px, cy - py) > size + ps + 2 for px, py, ps in placed):
                break
        placed.append((cx, cy, size))
        shapes.append({"kind": kind, "colour": random_shape_colour(rng),
                       "alpha": coverage(kind, cx, cy, size, rng.uniform(0, 2 * math.pi), h, w)})
    return Scene(background(h, w, random_background(rng)), shapes)


def random_video(rng, frames=48, h=64, w=96):
    """A toy video: shapes drift and rotate smoothly, the camera pans.

    Returns a list of Scenes. Shapes sit at separated anchors and move within
    a small radius, so they never overlap.
    """
    bg = random_background(rng)
    n = int(rng.integers(2, 4))
    kinds = ["circle"] + list(rng.permutation(["square", "triangle"])[: n - 1])
    # anchors spread along the long side
    xs = (np.arange(n) + 0.5) / n * w
    rng.shuffle(xs)
    motions = []
    for i, kind in enumerate(kinds):
        size = rng.uniform(7.0, min(11.0, w / n / 2 - 4))
        motions.append({
            "kind": kind, "colour": random_shape_colour(rng), "size": size,
            "x": xs[i], "y": rng.uniform(size + 4, h - size - 4),
            "ax": rng.uniform(1.0, 3.0), "ay": rng.uniform(2.0, 5.0),
            "wx": rng.uniform(0.5, 1.5), "wy": rng.uniform(0.5, 1.5), "ph": rng.uniform(0, 2 * math.pi),
            "angle": rng.uniform(0, 2 * math.pi), "spin": rng.uniform(-0.8, 0.8),
        })
    pan = rng.uniform(-6.0, 6.0, size=2)  # camera travel over the clip, pixels
    scenes = []
    for f in range(frames):
        t = f / max(frames - 1, 1)  # 0..1 over the clip
        cam = pan * t
        shapes = []
        for m in motions:
            ph = 2 * math.pi * t
            cx = m["x"] + m["ax"] * math.sin(ph * m["wx"] + m["ph"]) - cam[0]
            cy = m["y"] + m["ay"] * math.sin(ph * m["wy"] + 2 * m["ph"]) - cam[1]
            shapes.append({"kind": m["kind"], "colour": m["colour"],
                           "alpha": coverage(m["kind"], cx, cy, m["size"], m["angle"] + m["spin"] * t, h, w)})
        scenes.append(Scene(background(h, w, bg, shift=tuple(cam)), shapes))
    return scenes


# ----------------------------------------------------------------------------
# Metrics (shared by the evaluation and the benchmark)
# ----------------------------------------------------------------------------

def erode(mask, r):
    """Boolean mask shrunk by r pixels (4-neighbourhood); dilate(m, r) = ~erode(~m, r)."""
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:] &= out[:-1]
        m[:-1] &= out[1:]
        m[:, 1:] &= out[:, :-1]
        m[:, :-1] &= out[:, 1:]
        out = m
    return out


def dilate(mask, r):
    return ~erode(~mask, r)


def interior(alpha):
    """Pixels fully inside a shape and one pixel away from its edge."""
    full = alpha >= 0.999
    er = erode(full, 1)
    return er if er.any() else full


def shape_colours(img, scene):
    return [img[interior(s["alpha"])].mean(axis=0) for s in scene.shapes]


def nearest_palette(colour):
    d = np.linalg.norm(PALETTE - colour[None], axis=1)
    return int(d.argmin()), float(d.min())


def paint_result(img, scene):
    """(palette index or -1, clean): clean when every shape is within
    CLEAN_DISTANCE of the same palette colour."""
    picks = [nearest_palette(c) for c in shape_colours(img, scene)]
    idx = picks[0][0]
    clean = all(p[0] == idx and p[1] <= CLEAN_DISTANCE for p in picks)
    return (idx if clean else -1), clean


def psnr(a, b, mask=None):
    d = (a - b) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean())
    return 99.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


def saturation(img, mask=None):
    """Mean HSV saturation (max - min) / max."""
    mx, mn = img.max(axis=-1), img.min(axis=-1)
    s = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return float(s[mask].mean() if mask is not None else s.mean())


def to_uint8(img):
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
