"""The hamlet world: procedural 64x64 village landscapes with a pixel-exact concept map.

Each scene is drawn from its own seed, so ``render([7])`` is the same picture everywhere.
Every pixel carries one concept id (an index into ``CONCEPTS``); sky and grass cover the
background, later objects paint over earlier ones (houses and trees in depth order).

Scene type (an index into ``SCENES``) is decided from the *visible* concept map, first match
in this priority order (shares are fractions of the 4096 pixels):

1. ``village``   -- houses (wall + roof + window + door) cover >= 8%
2. ``lake``      -- water covers >= 8%
3. ``mountains`` -- mountain covers >= 8%
4. ``forest``    -- tree crowns cover >= 8%
5. ``meadow``    -- anything else

Example:
    >>> images, concepts, scenes = render(range(4))
    >>> images.shape, images.dtype, concepts.shape, scenes.shape
    ((4, 64, 64, 3), dtype('uint8'), (4, 64, 64), (4,))
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

CONCEPTS = [
    "sky", "cloud", "sun", "mountain", "grass", "water", "road",
    "tree", "trunk", "wall", "roof", "window", "door",
]  # fmt: skip
SCENES = ["village", "lake", "mountains", "forest", "meadow"]
SIZE = 64
TEST_SEED_START = 1_000_000_000  # held-out seeds: training never draws seeds at or above this

_C = {name: i for i, name in enumerate(CONCEPTS)}
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_WALLS = np.array(
    [[235, 225, 190], [240, 240, 232], [205, 172, 122], [168, 190, 212], [182, 92, 72],
     [222, 172, 160]], np.float32,
)  # fmt: skip
_ROOFS = np.array([[172, 52, 40], [122, 72, 42], [78, 78, 90], [68, 92, 128]], np.float32)


def _lerp(a, b, t):
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


class _Canvas:
    """An RGB float image and its concept map, painted shape by shape."""

    def __init__(self):
        self.rgb = np.zeros((SIZE, SIZE, 3), np.float32)
        self.cid = np.zeros((SIZE, SIZE), np.int64)

    def paint(self, mask, colour, concept):
        colour = np.asarray(colour, np.float32)
        self.rgb[mask] = colour[mask] if colour.ndim == 3 else colour
        self.cid[mask] = _C[concept]


def _ellipse(cx, cy, rx, ry):
    return ((_XX - cx) / rx) ** 2 + ((_YY - cy) / ry) ** 2 <= 1.0


def _rect(x0, y0, x1, y1):
    return (_XX >= x0) & (_XX < x1) & (_YY >= y0) & (_YY < y1)


def _sky(cv, rng, horizon, dusk):
    top = _lerp([62, 122, 215], [52, 38, 104], dusk)
    bottom = _lerp([168, 208, 248], [248, 150, 92], dusk)
    t = np.clip(_YY / max(horizon, 1), 0, 1)[..., None]
    cv.paint(_YY < horizon, top * (1 - t) + bottom * t, "sky")
    if rng.random() < 0.5:
        r = rng.uniform(4.0, 6.0)
        cx, cy = rng.uniform(6, 58), rng.uniform(5, max(6, horizon - 7))
        cv.paint(_ellipse(cx, cy, r, r), _lerp([255, 238, 140], [255, 140, 50], dusk), "sun")
    for _ in range(rng.integers(0, 4)):
        cx, cy = rng.uniform(0, 64), rng.uniform(4, max(5, horizon - 9))
        rx, ry = rng.uniform(6, 10), rng.uniform(2.5, 3.5)
        mask = _ellipse(cx, cy, rx, ry)
        for side in (-1, 1):
            mask |= _ellipse(cx + side * rx * 0.4, cy - ry * 0.7, rx * 0.45, ry * 0.9)
        shade = rng.uniform(0.92, 1.0)
        cv.paint(mask & (_YY < horizon), _lerp([246, 246, 250], [232, 172, 176], dusk) * shade,
                 "cloud")  # fmt: skip


def _mountains(cv, rng, horizon, dusk, big):
    peaks = rng.integers(1, 4)
    height = np.zeros(SIZE, np.float32)
    x = np.arange(SIZE, dtype=np.float32)
    for _ in range(peaks):
        h = rng.uniform(12, 24) if big else rng.uniform(7, 15)
        height = np.maximum(height, h - rng.uniform(0.5, 1.1) * np.abs(x - rng.uniform(0, 64)))
    top = horizon - height
    mask = (_YY >= top[None, :]) & (_YY < horizon)
    depth = np.clip((_YY - top[None, :]) / 20.0, 0, 1)[..., None]
    base = _lerp([118, 116, 146], [96, 72, 116], dusk)
    cv.paint(mask, base * (1.12 - 0.3 * depth), "mountain")


def _ground(cv, rng, horizon, dusk, theme):
    green = np.array([rng.uniform(95, 135), rng.uniform(165, 195), rng.uniform(55, 85)])
    green = green * (1 - 0.35 * dusk)
    t = ((_YY - horizon) / max(SIZE - horizon, 1))[..., None]
    cv.paint(_YY >= horizon, green * (1.08 - 0.16 * t), "grass")
    if rng.random() < (0.7 if theme == "village" else 0.4):
        xb, xh = rng.uniform(8, 56), rng.uniform(16, 48)
        wb = rng.uniform(5, 8)
        tt = np.clip((_YY - horizon) / max(SIZE - horizon, 1), 0, 1)
        mask = (np.abs(_XX - (xh + (xb - xh) * tt)) <= 1 + (wb - 1) * tt) & (_YY >= horizon)
        cv.paint(mask, [[156, 134, 100], [124, 122, 120]][rng.integers(2)], "road")
    if rng.random() < (0.95 if theme == "lake" else 0.2):
        ry = rng.uniform(6, 10) if theme == "lake" else rng.uniform(4, 8)
        rx = rng.uniform(16, 28) if theme == "lake" else rng.uniform(10, 20)
        mask = _ellipse(rng.uniform(10, 54), horizon + ry + rng.uniform(0, 5), rx, ry)
        ripple = (1 + 0.08 * np.sin(_YY * 1.9 + _XX * 0.15))[..., None]
        cv.paint(mask & (_YY >= horizon), _lerp([52, 112, 192], [72, 70, 132], dusk) * ripple,
                 "water")  # fmt: skip


def _house(cv, rng, horizon, dusk, base):
    w, hw, hr = rng.integers(12, 21), rng.integers(8, 13), rng.integers(5, 9)
    x0 = rng.integers(-2, SIZE - w + 3)
    top = base - hw
    cv.paint(_rect(x0, top, x0 + w, base), _WALLS[rng.integers(len(_WALLS))], "wall")
    oh, cx = rng.integers(1, 3), x0 + (w - 1) / 2
    half = (w + 2 * oh) / 2
    roof = (_YY >= top - hr) & (_YY < top) & (np.abs(_XX - cx) <= half * (_YY - top + hr + 1) / hr)
    cv.paint(roof, _ROOFS[rng.integers(len(_ROOFS))], "roof")
    lit = [240, 212, 96] if dusk > 0.6 else [44, 62, 102]
    ws, dw = rng.integers(3, 5), 4
    if rng.random() < 0.5:  # door in the middle, a window each side
        dx = x0 + (w - dw) // 2
        wins = [x0 + 1, x0 + w - 1 - ws]
    else:  # door on one side, one window on the other
        left = rng.random() < 0.5
        dx = x0 + 2 if left else x0 + w - 2 - dw
        wins = [x0 + w - 2 - ws] if left else [x0 + 2]
    for wx in wins:
        cv.paint(_rect(wx, top + 2, wx + ws, top + 2 + ws), lit, "window")
    cv.paint(_rect(dx, base - rng.integers(5, 7), dx + dw, base), [104, 62, 34], "door")


def _tree(cv, rng, dusk, base):
    r, th, tw = rng.uniform(4.5, 7.5), rng.integers(4, 8), 3
    cx = rng.uniform(-2, SIZE + 2)
    x0 = int(round(cx)) - 1
    cv.paint(_rect(x0, base - th, x0 + tw, base), [102, 70, 40], "trunk")
    cy = base - th - r + 2
    shade = (1.1 - 0.25 * np.clip((_YY - cy + _XX - cx) / (2 * r), -1, 1))[..., None]
    crown = np.array([rng.uniform(30, 60), rng.uniform(92, 124), rng.uniform(32, 52)])
    cv.paint(_ellipse(cx, cy, r, r * 1.1), crown * (1 - 0.3 * dusk) * shade, "tree")


_SCENE_RULE = [["wall", "roof", "window", "door"], ["water"], ["mountain"], ["tree"]]


def _scene_type(cid):
    share = np.bincount(cid.ravel(), minlength=len(CONCEPTS)) / cid.size
    for scene, names in enumerate(_SCENE_RULE):
        if share[[_C[n] for n in names]].sum() >= 0.08:
            return scene
    return len(SCENES) - 1


def _render_one(seed):
    rng = np.random.default_rng(seed)
    theme = SCENES[rng.integers(len(SCENES))]
    horizon = int(rng.integers(24, 40))
    dusk = float(rng.random() ** 2)
    cv = _Canvas()
    _sky(cv, rng, horizon, dusk)
    if rng.random() < (0.95 if theme == "mountains" else 0.25):
        _mountains(cv, rng, horizon, dusk, big=theme == "mountains")
    _ground(cv, rng, horizon, dusk, theme)
    n_house = rng.integers(2, 4) if theme == "village" else int(rng.random() < 0.2)
    n_tree = rng.integers(4, 8) if theme == "forest" else rng.integers(0, 3)
    things = [("house", rng.uniform(horizon + 4, SIZE + 1)) for _ in range(n_house)]
    things += [("tree", rng.uniform(horizon + 2, SIZE + 1)) for _ in range(n_tree)]
    for kind, base in sorted(things, key=lambda t: t[1]):
        if kind == "house":
            _house(cv, rng, horizon, dusk, int(base))
        else:
            _tree(cv, rng, dusk, int(base))
    grain = rng.normal(0, 1, (SIZE, SIZE, 1)).astype(np.float32)
    grain = grain * np.where(cv.cid == _C["grass"], 7.0, 2.5)[..., None]
    rgb = np.clip(cv.rgb + grain, 0, 255).astype(np.uint8)
    return rgb, cv.cid, _scene_type(cv.cid)


def render(seeds: int | Iterable[int]):
    """Render scenes: ``(images uint8 (N,64,64,3), concept ids int64 (N,64,64), scene ids (N,))``.

    ``seeds`` is one int (N = 1) or an iterable of non-negative ints; each scene depends only
    on its own seed.

    Example:
        >>> images, concepts, scenes = render([0, 1, 2])
        >>> [CONCEPTS[i] for i in np.unique(concepts[0])][:2]
        ['sky', 'cloud']
    """
    if isinstance(seeds, (int, np.integer)):
        seeds = [seeds]
    seeds = list(seeds)
    bad = [s for s in seeds if not isinstance(s, (int, np.integer)) or s < 0]
    if bad:
        raise TypeError(f"seeds must be non-negative ints; got {bad[:3]!r}")
    images = np.zeros((len(seeds), SIZE, SIZE, 3), np.uint8)
    concepts = np.zeros((len(seeds), SIZE, SIZE), np.int64)
    scenes = np.zeros(len(seeds), np.int64)
    for i, seed in enumerate(seeds):
        images[i], concepts[i], scenes[i] = _render_one(int(seed))
    return images, concepts, scenes
