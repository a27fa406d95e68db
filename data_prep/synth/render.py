"""Parametric cartoon face renderer: per-frame params (T, 10) -> RGB frames (T, S, S, 3) uint8.

The head is two ellipsoids (cranium + jaw) in head units (x right, y up, z towards the camera). Facial
landmarks live on their surface as a linear blendshape model (base + sum_k coef_k * delta_k, the 3DMM
analogue), are rotated by (yaw, pitch, roll) about a pivot at the neck and projected with a weak
perspective. Outlines of ellipsoids (head, hair) are their exact projected silhouettes, so yaw moves the
features across a head that keeps its width: it looks like yaw. Drawing happens with PIL on a canvas
2-4x larger than the output and is box-downsampled (anti-aliasing).
"""
from __future__ import annotations

import zlib

import numpy as np
from PIL import Image, ImageDraw

from data_prep.schema import PARAM_COLUMNS
from data_prep.synth.identity import Appearance

SHAPES = ("jaw", "smile", "brow", "close_up", "squint", "gaze_x", "gaze_y")  # blendshape order
PIVOT = np.array([0.0, -0.9, -0.25])  # neck pivot of the head rotation
FOCAL = 7.0  # weak-perspective focal length in head units
ARC = np.linspace(0, 2 * np.pi, 48, endpoint=False)  # silhouette samples
EYE_U = np.linspace(-1, 1, 9)


def supersample_factor(size: int) -> int:
    return 3 if size <= 192 else 2


def _shade(rgb, f, alpha=None):
    c = tuple(int(np.clip(v * f, 0, 255)) for v in rgb)
    return c if alpha is None else c + (int(alpha),)


class FaceRenderer:
    """Renders one identity at one size. `render(params)` is the only per-frame entry point."""

    def __init__(self, look: Appearance, size: int = 64):
        if size < 32:
            raise ValueError(f"render size must be >= 32 px, got {size}")
        self.look, self.size, self.ss = look, size, supersample_factor(size)
        self.canvas = size * self.ss
        self.scale, self.centre = 0.3 * self.canvas, np.array([0.5, 0.47]) * self.canvas
        a, b = look.head_width, look.head_height
        # (centre, radii) of the ellipsoids, head units
        self.cranium = (np.array([0, 0.15, 0.0]), np.array([a, b, 1.05]))
        self.jaw = (np.array([0, -0.42, 0.06]), np.array([look.jaw_width, 0.62, 0.92]))
        self.hair = self._hair_volumes()
        self.names, self.base, self.deltas = self._template()
        self.colours = self._palette()
        c, r = self.cranium  # outward normals of the ellipsoid at the two cheeks (for blush foreshortening)
        cheeks = self.base[[self.names["blush_l"].start, self.names["blush_r"].start]]
        g = (cheeks - c) / r ** 2
        self.blush_normals = g / np.linalg.norm(g, axis=1, keepdims=True)
        self.background = self._background()
        self._draw_torso(self.background)

    # ---------------------------------------------------------------- geometry (identity level)
    def _surface_z(self, x, y):
        z = np.full(np.shape(x), 0.3)
        for c, r in (self.cranium, self.jaw):
            q = 1 - ((x - c[0]) / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
            z = np.maximum(z, c[2] + r[2] * np.sqrt(np.clip(q, 0, 1)))
        return z

    def _on_surface(self, xy, lift=0.0):
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([xy, self._surface_z(xy[:, 0], xy[:, 1]) + lift])

    def _hair_volumes(self):
        L, a, b = self.look, self.look.head_width, self.look.head_height
        style, vols = L.hair_style, {}
        if style != "bald":
            pad = {"buzz": 0.03, "curly": 0.16, "bun": 0.05}.get(style, 0.09)
            vols["top"] = (np.array([0, 0.3, -0.06]), np.array([a + pad, b * 0.95 + pad, 1.05 + pad]))
        if style == "long":
            vols["back"] = (np.array([0, -0.45, -0.5]), np.array([a + 0.25, 1.6, 0.7]))
        elif style == "bob":
            vols["back"] = (np.array([0, -0.15, -0.35]), np.array([a + 0.2, 1.0, 0.8]))
        elif style == "bun":
            vols["bun"] = (np.array([0, 1.25, -0.55]), np.array([0.42, 0.36, 0.4]))
        return vols

    def _hairline(self):
        L = self.look
        u = np.linspace(-0.9, 0.9, 15)
        y = {"short": 0.84 - 0.5 * u ** 2, "buzz": 0.86 - 0.5 * u ** 2, "bun": 0.88 - 0.55 * u ** 2,
             "sidepart": 0.8 - 0.45 * u ** 2 + 0.12 * u, "fringe": 0.52 - 0.2 * u ** 4 + 0.02 * np.cos(22 * u),
             "curly": 0.78 - 0.45 * u ** 2 + 0.035 * np.cos(19 * u), "long": 0.86 - 0.62 * np.abs(u) ** 0.8,
             "bob": 0.84 - 0.55 * np.abs(u) ** 0.8}.get(L.hair_style, 0.84 - 0.5 * u ** 2)
        return self._on_surface(np.column_stack([u * L.head_width, y]), lift=0.02)

    def _template(self):
        """Landmark sets on the face surface: base (N, 3) and blendshape deltas (len(SHAPES), N, 3)."""
        L, parts, deltas = self.look, {}, {}

        def add(name, pts, **dxy):
            parts[name] = pts
            deltas[name] = {k: np.column_stack([v, np.zeros(len(v))]) if v.shape[1] == 2 else v for k, v in dxy.items()}

        # eyes: white outline, iris, pupil, lid curves (per side s = -1 left, +1 right)
        rw, ey = L.eye_size, 0.08
        rh = 0.55 * rw
        prof_up = (1 - EYE_U ** 2) ** 0.6
        for s, side in ((-1, "l"), (1, "r")):
            ex = s * L.eye_spacing
            x = ex + rw * EYE_U
            up = ey + rh * prof_up + 0.1 * rh * s * EYE_U
            low = ey - 0.65 * rh * (1 - EYE_U ** 2) ** 0.8 + 0.1 * rh * s * EYE_U
            close = np.column_stack([np.zeros(9), low - up])
            squint = np.column_stack([np.zeros(9), 0.5 * rh * (1 - EYE_U ** 2)])
            add(f"white_{side}", self._on_surface(np.column_stack([np.r_[x, x[::-1]], np.r_[up, low[::-1]]]), 0.005))
            add(f"lid_up_{side}", self._on_surface(np.column_stack([x, up]), 0.01), close_up=close)
            add(f"lid_low_{side}", self._on_surface(np.column_stack([x, low]), 0.01), squint=squint)
            add(f"cover_up_{side}", self._on_surface(np.column_stack([x[::-1] * 1.04 - ex * 0.04, up[::-1] + 0.6 * rh]), 0.01))
            add(f"cover_low_{side}", self._on_surface(np.column_stack([x[::-1] * 1.04 - ex * 0.04, low[::-1] - 0.7 * rh]), 0.01))
            circ = np.column_stack([np.cos(ARC[::4]), np.sin(ARC[::4])])
            gaze_x, gaze_y = np.tile([0.45 * rw, 0], (12, 1)), np.tile([0, 0.4 * rh], (12, 1))
            for name, r in (("iris", 0.46 * rw), ("pupil", 0.2 * rw)):
                add(f"{name}_{side}", self._on_surface([ex, ey], 0.0) + np.column_stack([r * circ, np.zeros(12)]),
                    gaze_x=gaze_x, gaze_y=gaze_y)
            add(f"crease_{side}", self._on_surface(np.column_stack([x[1:-1], up[1:-1] + 0.35 * rh]), 0.01),
                close_up=np.column_stack([np.zeros(7), 0.5 * (low - up)[1:-1]]))
            bu = np.linspace(-1, 1, 7)
            bx, by = ex + s * 0.02 + 0.21 * bu, ey + 0.3 + 0.05 * (1 - bu ** 2) + 0.025 * s * bu
            half = L.brow_thickness * (1 - 0.35 * np.clip(s * bu, 0, 1)) / 2
            brow = np.column_stack([np.r_[bx, bx[::-1]], np.r_[by + half, (by - half)[::-1]]])
            raise_ = np.column_stack([np.zeros(14), np.r_[0.09 + 0.03 * (1 - bu ** 2), (0.09 + 0.03 * (1 - bu ** 2))[::-1]]])
            add(f"brow_{side}", self._on_surface(brow, 0.02), brow=raise_)
            rim = np.column_stack([np.sign(np.cos(ARC[::3])) * np.abs(np.cos(ARC[::3])) ** 0.6 * 1.3 * rw,
                                   np.sign(np.sin(ARC[::3])) * np.abs(np.sin(ARC[::3])) ** 0.6 * 1.7 * rh])
            add(f"glasses_{side}", self._on_surface([ex, ey], 0.1) + np.column_stack([rim, np.zeros(16)]))
            add(f"blush_{side}", self._on_surface([s * (L.eye_spacing + 0.12), -0.28], 0.0))
            add(f"ear_{side}", np.array([s * (L.head_width - 0.03), 0.02, -0.05]) + np.outer(np.cos(ARC[::4]), [s * 0.13, 0, -0.1])
                + np.outer(np.sin(ARC[::4]), [0, 0.21, 0]))
        # nose: bridge on the surface, tip in front of it (parallax under yaw)
        nl = 0.26 * L.nose_length
        nose = self._on_surface([[-0.05, 0.0], [-0.085, -nl], [0.0, -nl - 0.06], [0.085, -nl], [0.05, 0.0]])
        nose[1:4, 2] += 0.2 * L.nose_length
        add("nose", nose)
        add("nostrils", self._on_surface([[-0.05, -nl - 0.04], [0.05, -nl - 0.04]], 0.16 * L.nose_length))
        # mouth: outer/inner lip contours, corners first; deltas for jaw opening and smiling
        w, ym = L.mouth_width, -0.57
        ou_x, ou_y = np.array([-1, -0.55, -0.15, 0, 0.15, 0.55, 1]) * w, np.array([0, 0.045, 0.058, 0.042, 0.058, 0.045, 0])
        lo_x, lo_y = np.array([-1, -0.55, 0, 0.55, 1]) * w, np.array([0, -0.06, -0.085, -0.06, 0])
        in_x = np.array([-0.92, -0.5, 0, 0.5, 0.92]) * w
        drop = np.array([0.02, 0.2, 0.26, 0.2, 0.02])
        for name, mx, my, open_dy in (("lip_up", ou_x, ou_y, 0.015 * np.abs(ou_y) / 0.058),
                                      ("lip_low", lo_x, lo_y, -drop),
                                      ("inner_up", in_x, np.array([0, 0.008, 0.004, 0.008, 0]), 0.02 * drop),
                                      ("inner_low", in_x, np.array([0, -0.008, -0.012, -0.008, 0]), -drop)):
            u = mx / w
            jaw = np.column_stack([-0.12 * mx, open_dy])
            smile = np.column_stack([0.2 * mx, 0.075 * u ** 2 - 0.012 * (1 - u ** 2) * (my < 0)])
            add(name, self._on_surface(np.column_stack([mx, ym + my])), jaw=jaw, smile=smile)
        teeth = np.column_stack([in_x * 0.95, ym + np.array([0, 0.006, 0.002, 0.006, 0]) - 0.055])
        add("teeth", self._on_surface(teeth), smile=np.column_stack([0.2 * in_x * 0.95, 0.075 * (in_x / w) ** 2]))
        bx = np.array([1.0, 0.75, 0.45, 0.2, 0.0, -0.2, -0.45, -0.75, -1.0])  # upper edge, right to left
        by = np.array([-0.52, -0.4, -0.42, -0.46, -0.44, -0.46, -0.42, -0.4, -0.52])
        add("beard", self._on_surface(np.column_stack([bx * L.jaw_width, by])))
        add("hairline", self._hairline())
        names, base, blend, n = {}, [], np.zeros((len(SHAPES), 0, 3)), 0
        for name, pts in parts.items():
            names[name] = slice(n, n + len(pts))
            n += len(pts)
            base.append(pts)
            d = np.zeros((len(SHAPES), len(pts), 3))
            for k, v in deltas[name].items():
                d[SHAPES.index(k)] = v
            blend = np.concatenate([blend, d], axis=1)
        return names, np.concatenate(base), blend

    def _background(self) -> Image.Image:
        L, C = self.look, self.canvas
        t = np.linspace(0, 1, C)[:, None, None]
        img = (1 - t) * np.array(L.bg_top) + t * np.array(L.bg_bottom)
        img = np.broadcast_to(img, (C, C, 3)).copy()
        rng = np.random.default_rng(zlib.crc32(repr((L.bg_top, L.bg_bottom, L.bg_kind)).encode()))  # stable across runs
        if L.bg_kind == "wall":
            img[int(0.62 * C):] = np.array(L.bg_bottom) * 0.9
            img[int(0.6 * C):int(0.62 * C)] = np.array(L.bg_top) * 1.1
        elif L.bg_kind == "window":
            x0 = int(C * (0.04 if rng.random() < 0.5 else 0.66))
            img[int(0.08 * C):int(0.5 * C), x0:x0 + int(0.3 * C)] = (205, 225, 245)
            img[int(0.285 * C):int(0.3 * C), x0:x0 + int(0.3 * C)] = (235, 235, 235)
            img[int(0.08 * C):int(0.5 * C), x0 + int(0.14 * C):x0 + int(0.155 * C)] = (235, 235, 235)
        elif L.bg_kind == "shelf":
            y0, x = int(0.3 * C), int(C * (0.02 if rng.random() < 0.5 else 0.7))
            img[y0:y0 + int(0.025 * C), :] = (110, 80, 55)
            while x < C and x < int(C * (0.3 if x < C / 2 else 1)):
                w, h = int(C * rng.uniform(0.025, 0.05)), int(C * rng.uniform(0.12, 0.2))
                img[y0 - h:y0, x:x + w] = rng.integers(40, 200, 3)
                x += w + 1
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    # ---------------------------------------------------------------- per frame
    @staticmethod
    def _rotations(pose):
        """(T, 3) yaw, pitch, roll -> (T, 3, 3) rotation matrices R = Rz(roll) Rx(pitch) Ry(yaw)."""
        (cy, cp, cr), (sy, sp, sr) = np.cos(pose.T), np.sin(pose.T)
        o, z = np.ones_like(cy), np.zeros_like(cy)
        ry = np.stack([np.stack([cy, z, sy], -1), np.stack([z, o, z], -1), np.stack([-sy, z, cy], -1)], -2)
        rx = np.stack([np.stack([o, z, z], -1), np.stack([z, cp, -sp], -1), np.stack([z, sp, cp], -1)], -2)
        rz = np.stack([np.stack([cr, sr, z], -1), np.stack([-sr, cr, z], -1), np.stack([z, z, o], -1)], -2)
        return rz @ rx @ ry

    def _project(self, p):
        """(..., 3) head units -> (..., 2) canvas pixels (weak perspective)."""
        k = self.scale * FOCAL / (FOCAL - p[..., 2])
        return np.stack([self.centre[0] + k * p[..., 0], self.centre[1] - k * p[..., 1]], -1)

    def _silhouettes(self, R, ellipsoid, grow=1.0, shift=(0.0, 0.0), jaw_drop=None, bumps=0.0):
        """Exact outline of a rotated ellipsoid: (T, 48, 2) canvas pixels (optionally curly)."""
        c, r = ellipsoid
        c = np.broadcast_to(c, (len(R), 3)).copy()
        if jaw_drop is not None:
            c[:, 1] -= 0.1 * jaw_drop
        cen = np.einsum("tij,tj->ti", R, c - PIVOT) + PIVOT  # (T, 3)
        A = R @ np.diag(1 / (grow * r) ** 2) @ R.transpose(0, 2, 1)
        M = A[:, :2, :2] - A[:, :2, 2:] @ A[:, 2:, :2] / A[:, 2:, 2:]  # (T, 2, 2) Schur complement
        basis = np.linalg.inv(np.linalg.cholesky(M)).transpose(0, 2, 1)
        circle = np.column_stack([np.cos(ARC), np.sin(ARC)]) * (1 + bumps * np.abs(np.sin(7 * ARC)))[:, None]
        pts = cen[:, None, :2] + np.einsum("tij,kj->tki", basis, circle)
        pts = pts + np.array(shift)
        return self._project(np.concatenate([pts, np.broadcast_to(cen[:, None, 2:], pts.shape[:2] + (1,))], -1))

    def _palette(self) -> dict:
        """Every colour, precomputed; translucent touches are pre-blended over skin so drawing stays RGB."""
        L = self.look
        mix = lambda a, b, w: tuple(int(round((1 - w) * x + w * y)) for x, y in zip(a, b))
        skin = L.skin
        return {
            "skin": skin, "shadow": _shade(skin, 0.86), "neck": _shade(skin, 0.78), "ear": _shade(skin, 0.9),
            "ear_line": _shade(skin, 0.7), "nose": _shade(skin, 0.87), "nostril": _shade(skin, 0.6),
            "crease": _shade(skin, 0.8), "hair": L.hair, "hair_back": _shade(L.hair, 0.82),
            "cap": mix(L.hair, skin, 0.45) if L.hair_style == "buzz" else L.hair,
            "brow": _shade(L.hair, 0.7) if sum(L.hair) > 250 else L.hair, "iris": L.eyes,
            "beard": L.hair if L.beard == "full" else mix(skin, L.hair, 0.3),
            "blush": [mix(skin, (230, 110, 110), a) for a in np.linspace(0.08, 0.3, 8)],
            "lip_up": _shade(L.lips, 0.9), "lip_low": L.lips, "lip_line": _shade(L.lips, 0.5),
            "rim": (35, 30, 30), "white": (245, 243, 238), "pupil": (15, 12, 12), "lash": (30, 22, 20),
            "mouth": (90, 30, 35), "teeth": (240, 238, 230)}

    def _draw_torso(self, img: Image.Image):
        """Neck and shoulders do not follow the head: they are part of the static background."""
        d, S, (cx, cy), col = ImageDraw.Draw(img), self.scale, self.centre, self.colours
        d.rectangle([cx - 0.38 * S, cy + 0.3 * S, cx + 0.38 * S, cy + 1.7 * S], fill=col["neck"])
        d.ellipse([cx - 1.8 * S, cy + 1.35 * S, cx + 1.8 * S, cy + 3.4 * S], fill=self.look.shirt)
        d.polygon([cx - 0.38 * S, cy + 1.3 * S, cx + 0.38 * S, cy + 1.3 * S, cx, cy + 1.72 * S], fill=col["neck"])

    @staticmethod
    def _arcs(outline, lo, hi):
        """Per frame, indices of outline points with polar angle in (lo, hi) (screen angle, y up), sorted."""
        c = outline.mean(1, keepdims=True)
        phi = np.mod(np.arctan2(-(outline[..., 1] - c[..., 1]), outline[..., 0] - c[..., 0]) - lo[:, None], 2 * np.pi)
        order = np.argsort(phi, axis=1)  # (T, 48) from lo counter-clockwise
        keep = np.take_along_axis(phi, order, 1) < np.mod(hi - lo, 2 * np.pi)[:, None]
        return [o[k] for o, k in zip(order, keep)]

    def render(self, params: np.ndarray) -> np.ndarray:
        """(T, 10) params in PARAM_COLUMNS order -> (T, size, size, 3) uint8."""
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != len(PARAM_COLUMNS):
            raise ValueError(f"params must be (T, {len(PARAM_COLUMNS)}) in order {PARAM_COLUMNS}, got {params.shape}")
        p = dict(zip(PARAM_COLUMNS, params.T))
        coef = np.stack([p["jaw_open"], np.clip(p["smile"] + 0.5 * p["laugh"], 0, 1),
                         np.clip(p["brow_raise"] + 0.15 * p["laugh"], 0, 1),
                         np.clip(p["blink"] + 0.25 * p["laugh"] + 0.05 * p["smile"], 0, 1),
                         np.clip(0.7 * p["laugh"] + 0.25 * p["smile"], 0, 1), p["gaze_x"], p["gaze_y"]], -1)
        R = self._rotations(params[:, -3:])
        pts3 = self.base + np.einsum("tk,knd->tnd", coef, self.deltas)  # (T, N, 3)
        pts = self._project(np.einsum("tij,tnj->tni", R, pts3 - PIVOT) + PIVOT)  # (T, N, 2)
        jaw = coef[:, 0]
        O = {"head": self._silhouettes(R, self.cranium), "jaw": self._silhouettes(R, self.jaw, jaw_drop=jaw),
             "head_lit": self._silhouettes(R, self.cranium, 0.93, (-0.05, 0.04)),
             "jaw_lit": self._silhouettes(R, self.jaw, 0.9, (-0.05, 0.03), jaw_drop=jaw)}
        O.update({k: self._silhouettes(R, v, bumps=0.05 * (self.look.hair_style == "curly")) for k, v in self.hair.items()})
        # blush fades and narrows as the cheek turns away (z of the rotated cheek normal)
        facing = np.clip(np.einsum("tij,nj->tni", R, self.blush_normals)[..., 2], 0, 1)  # (T, 2)
        arcs = {}
        if "top" in O:  # the hair cap runs from the right end of the hairline over the top to its left end
            line, c = pts[:, self.names["hairline"]], O["top"].mean(1)
            ang = lambda q: np.arctan2(-(q[:, 1] - c[:, 1]), q[:, 0] - c[:, 0])
            arcs["top"] = self._arcs(O["top"], ang(line[:, -1]), ang(line[:, 0]))
        if self.look.beard != "none":
            arcs["jaw"] = self._arcs(O["jaw"], np.full(len(R), 3.3), np.full(len(R), 6.12))
        blush = np.clip((coef[:, 1] * 8).astype(int), 0, 7)
        blush_w = np.clip((facing - 0.55) / 0.3, 0, 1)
        out = np.empty((len(params), self.size, self.size, 3), np.uint8)
        for t in range(len(params)):
            out[t] = self._draw(pts[t], {k: v[t] for k, v in O.items()}, {k: v[t] for k, v in arcs.items()},
                                blush[t], blush_w[t])
        return out

    def _draw(self, P, O, arcs, blush, blush_w) -> np.ndarray:
        L, S, n, col = self.look, self.scale, self.names, self.colours
        img = self.background.copy()
        d = ImageDraw.Draw(img)
        seg = lambda name: P[n[name]].ravel().tolist()
        if "back" in O:
            d.polygon(O["back"].ravel().tolist(), fill=col["hair_back"])
        if "top" in O:
            d.polygon(O["top"].ravel().tolist(), fill=col["hair"])
        if "bun" in O:
            d.polygon(O["bun"].ravel().tolist(), fill=col["hair_back"])
        if L.hair_style not in ("long", "bob"):
            for side in "lr":
                d.polygon(seg(f"ear_{side}"), fill=col["ear"], outline=col["ear_line"])
        d.polygon(O["head"].ravel().tolist(), fill=col["shadow"])
        d.polygon(O["jaw"].ravel().tolist(), fill=col["shadow"])
        d.polygon(O["head_lit"].ravel().tolist(), fill=col["skin"])
        d.polygon(O["jaw_lit"].ravel().tolist(), fill=col["skin"])
        if "top" in O:
            d.polygon(np.concatenate([P[n["hairline"]], O["top"][arcs["top"]]]).ravel().tolist(), fill=col["cap"])
        if "jaw" in arcs:
            d.polygon(np.concatenate([P[n["beard"]], O["jaw"][arcs["jaw"]]]).ravel().tolist(), fill=col["beard"])
        for side, w in zip("lr", blush_w):  # cheeks blush more when smiling
            bx, by = P[n[f"blush_{side}"]][0]
            if w > 0.1:
                d.ellipse([bx - 0.15 * S * w, by - 0.08 * S, bx + 0.15 * S * w, by + 0.08 * S], fill=col["blush"][blush])
        d.polygon(seg("nose"), fill=col["nose"])
        for x, y in P[n["nostrils"]]:
            d.ellipse([x - 0.025 * S, y - 0.015 * S, x + 0.025 * S, y + 0.015 * S], fill=col["nostril"])
        self._draw_eyes(d, P)
        self._draw_mouth(d, P)
        if L.glasses:
            w = max(1, int(0.035 * S))
            for side in "lr":
                rim = P[n[f"glasses_{side}"]]
                d.line(np.concatenate([rim, rim[:1]]).ravel().tolist(), fill=col["rim"], width=w)
            d.line([*P[n["glasses_l"]][0], *P[n["glasses_r"]][8]], fill=col["rim"], width=w)
        return np.asarray(img.reduce(self.ss))

    def _draw_eyes(self, d, P):
        """Eye white at full size, iris and pupil, then skin-coloured lids that cover what is closed."""
        L, S, n, col = self.look, self.scale, self.names, self.colours
        hl = 0.06 * S * L.eye_size / 0.16  # highlight radius
        for side in "lr":
            up, low = P[n[f"lid_up_{side}"]], P[n[f"lid_low_{side}"]]
            d.polygon(P[n[f"white_{side}"]].ravel().tolist(), fill=col["white"])
            d.polygon(P[n[f"iris_{side}"]].ravel().tolist(), fill=col["iris"])
            d.polygon(P[n[f"pupil_{side}"]].ravel().tolist(), fill=col["pupil"])
            cx, cy = P[n[f"pupil_{side}"]].mean(0) - 1.2 * hl
            d.ellipse([cx - hl, cy - hl, cx + hl, cy + hl], fill=col["white"])
            d.polygon(np.concatenate([low, P[n[f"cover_low_{side}"]]]).ravel().tolist(), fill=col["skin"])
            d.polygon(np.concatenate([up, P[n[f"cover_up_{side}"]]]).ravel().tolist(), fill=col["skin"])
            d.line(P[n[f"crease_{side}"]].ravel().tolist(), fill=col["crease"], width=max(1, int(0.02 * S)))
            d.line(up.ravel().tolist(), fill=col["lash"], width=max(1, int(0.04 * S)), joint="curve")
            d.polygon(P[n[f"brow_{side}"]].ravel().tolist(), fill=col["brow"])

    def _draw_mouth(self, d, P):
        S, n, col = self.scale, self.names, self.colours
        ou, lo, iu, il = P[n["lip_up"]], P[n["lip_low"]], P[n["inner_up"]], P[n["inner_low"]]
        is_open = il[2, 1] - iu[2, 1] > 0.02 * S
        if is_open:  # mouth cavity and upper teeth
            d.polygon(np.concatenate([iu, il[::-1]]).ravel().tolist(), fill=col["mouth"])
            d.polygon(np.concatenate([iu, P[n["teeth"]][::-1]]).ravel().tolist(), fill=col["teeth"])
        d.polygon(np.concatenate([ou, iu[::-1]]).ravel().tolist(), fill=col["lip_up"])
        d.polygon(np.concatenate([lo, il[::-1]]).ravel().tolist(), fill=col["lip_low"])
        if not is_open:  # the line where the lips meet
            d.line(((iu + il) / 2).ravel().tolist(), fill=col["lip_line"], width=max(1, int(0.02 * S)))
