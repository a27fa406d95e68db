"""Synthetic identities: how a person looks (renderer), sounds (speech) and behaves (reaction style).

Everything is drawn from one numpy Generator, so an identity is a pure function of (corpus seed, index).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SKIN_TONES = ((255, 224, 196), (246, 205, 176), (234, 186, 152), (219, 166, 128), (196, 138, 100),
              (165, 110, 78), (132, 86, 60), (101, 66, 47))
HAIR_COLOURS = ((28, 24, 24), (58, 40, 30), (96, 64, 42), (138, 66, 38), (150, 112, 72), (214, 178, 112),
                (160, 158, 155), (220, 218, 212))
HAIR_WEIGHTS = (0.24, 0.22, 0.16, 0.08, 0.1, 0.1, 0.06, 0.04)  # black, dark brown, ..., grey, white
DYED_HAIR = ((170, 50, 90), (60, 90, 170), (200, 90, 40))
EYE_COLOURS = ((92, 58, 34), (52, 34, 24), (128, 98, 52), (78, 118, 70), (68, 118, 178), (118, 134, 150))
HAIR_STYLES = ("short", "sidepart", "fringe", "curly", "buzz", "bald", "long", "bob", "bun")
BACKGROUNDS = ("gradient", "wall", "window", "shelf")
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "anika", "annie", "belinda", "linda", "steph", "alicia", "andrea")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "adam", "andy", "benjamin", "david", "ed", "john",
                 "max", "michael", "paul", "rob", "robert", "travis", "victor", "zac")


@dataclass(frozen=True)
class Style:
    """Per-person behaviour: how often and how strongly this person reacts (see the rule table in README)."""
    reactivity: float  # 0..1, scales every reaction probability
    expressiveness: float  # 0..1, scales smile / brow / jaw / laugh amplitudes
    head_energy: float  # ~0.4..1.4, scales idle head motion and nod amplitude
    nod_latency: float  # seconds after the partner's phrase end (mean; rule range 0.2-0.6)
    smile_latency: float  # seconds after the partner's smile onset (rule range 0.3-0.8)
    laugh_latency: float  # seconds after the partner's laugh onset (rule range 0.2-0.7)
    brow_latency: float  # seconds after the partner's question end (rule range 0.15-0.5)
    p_nod: float
    p_backchannel: float
    p_smile_mirror: float
    p_laugh_back: float
    p_brow_question: float
    laugh_rate: float  # probability of laughing after one of one's own phrases
    smile_rate: float  # probability of a smile episode during one of one's own phrases
    blink_rate: float  # blinks per second
    smile_base: float  # resting smile


@dataclass(frozen=True)
class Voice:
    espeak: str  # espeak-ng voice, e.g. "en-gb+f3"
    speed: int  # words per minute (espeak -s)
    pitch: int  # 0..99 (espeak -p)
    f0: float  # Hz, for the fallback formant voice and for laughter
    formant_scale: float  # vocal-tract length factor for the fallback voice and laughter
    gain_db: float  # speech level relative to -20 dBFS


@dataclass(frozen=True)
class Appearance:
    skin: tuple
    hair: tuple
    eyes: tuple
    lips: tuple
    shirt: tuple
    bg_top: tuple
    bg_bottom: tuple
    bg_kind: str
    hair_style: str
    head_width: float  # cranium half-width (head units)
    head_height: float  # cranium half-height
    jaw_width: float  # jaw ellipsoid half-width
    eye_spacing: float  # half distance between eye centres
    eye_size: float  # eye half-width
    brow_thickness: float
    nose_length: float
    mouth_width: float  # half-width
    glasses: bool
    beard: str  # "none" | "stubble" | "full"


@dataclass(frozen=True)
class Identity:
    identity_id: str
    split: str
    presentation: str  # "f" | "m": only used to pair voice and look plausibly
    style: Style
    voice: Voice
    appearance: Appearance

    def to_record(self) -> dict:
        """Flat dict for identities.parquet."""
        rec = {"identity": self.identity_id, "split": self.split, "presentation": self.presentation}
        rec.update({f"style_{k}": v for k, v in asdict(self.style).items()})
        rec.update({f"voice_{k}": v for k, v in asdict(self.voice).items()})
        rec.update({f"look_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.appearance).items()})
        return rec


def _jitter(rgb, rng, amount=10):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def sample_style(rng: np.random.Generator, reactivity: float | None = None) -> Style:
    """`reactivity`: None draws it per identity; a number gives everyone that value (the other draws are the
    same either way, so a corpus differs only in how often people react)."""
    drawn = float(rng.beta(2.5, 2.0))
    reactivity = drawn if reactivity is None else float(reactivity)
    expressiveness = float(rng.beta(2.2, 2.0))
    u = lambda lo, hi: float(rng.uniform(lo, hi))
    return Style(
        reactivity=reactivity, expressiveness=expressiveness, head_energy=u(0.5, 1.4),
        nod_latency=u(0.28, 0.52), smile_latency=u(0.40, 0.70), laugh_latency=u(0.28, 0.60),
        brow_latency=u(0.22, 0.42),
        p_nod=float(np.clip(0.25 + 0.7 * reactivity, 0, 0.95)),
        p_backchannel=float(np.clip(0.05 + 0.45 * reactivity * u(0.6, 1.2), 0, 0.6)),
        p_smile_mirror=float(np.clip(0.15 + 0.75 * reactivity * u(0.7, 1.2), 0, 0.95)),
        p_laugh_back=float(np.clip(0.1 + 0.7 * reactivity * u(0.6, 1.2), 0, 0.9)),
        p_brow_question=float(np.clip(0.35 + 0.6 * reactivity, 0, 0.95)),
        laugh_rate=u(0.04, 0.14), smile_rate=float(0.15 + 0.35 * expressiveness), blink_rate=u(0.2, 0.45),
        smile_base=u(0.0, 0.15) * expressiveness,
    )


def sample_voice(rng: np.random.Generator, presentation: str) -> Voice:
    variant = _pick(rng, FEMALE_VARIANTS if presentation == "f" else MALE_VARIANTS)
    f0 = float(rng.uniform(185, 245) if presentation == "f" else rng.uniform(95, 140))
    return Voice(espeak=f"{_pick(rng, ACCENTS)}+{variant}", speed=int(rng.integers(145, 186)),
                 pitch=int(rng.integers(30, 71)), f0=f0,
                 formant_scale=float(rng.uniform(1.05, 1.18) if presentation == "f" else rng.uniform(0.9, 1.02)),
                 gain_db=float(rng.uniform(-3, 3)))


def sample_appearance(rng: np.random.Generator, presentation: str) -> Appearance:
    skin = _jitter(_pick(rng, SKIN_TONES), rng, 8)
    dark_skin = sum(skin) < 450
    if rng.random() < 0.06:
        hair = _pick(rng, DYED_HAIR)
    else:
        hair = _pick(rng, HAIR_COLOURS[:2]) if dark_skin else HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)]
    styles = ("long", "bob", "bun", "curly", "fringe", "sidepart") if presentation == "f" else \
        ("short", "sidepart", "curly", "buzz", "bald", "short", "fringe")
    hair_style = _pick(rng, styles)
    beard = "none" if presentation == "f" else _pick(rng, ("none", "none", "stubble", "full"))
    lips = tuple(int(c) for c in np.clip(np.array(skin) * np.array([0.82, 0.58, 0.58]) + rng.integers(-8, 9, 3), 0, 255))
    hue = rng.uniform(0, 1)
    bg_top = tuple(int(c) for c in 255 * (0.55 + 0.35 * np.array([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]) ** 2))
    bg_bottom = tuple(int(c * rng.uniform(0.55, 0.8)) for c in bg_top)
    shirt = tuple(int(c) for c in rng.integers(30, 220, 3))
    return Appearance(
        skin=skin, hair=_jitter(hair, rng, 12), eyes=_jitter(_pick(rng, EYE_COLOURS), rng, 8), lips=lips,
        shirt=shirt, bg_top=bg_top, bg_bottom=bg_bottom, bg_kind=_pick(rng, BACKGROUNDS), hair_style=hair_style,
        head_width=float(rng.uniform(0.92, 1.04)), head_height=float(rng.uniform(1.08, 1.2)),
        jaw_width=float(rng.uniform(0.66, 0.86)), eye_spacing=float(rng.uniform(0.34, 0.41)),
        eye_size=float(rng.uniform(0.14, 0.18)), brow_thickness=float(rng.uniform(0.04, 0.075)),
        nose_length=float(rng.uniform(0.8, 1.2)), mouth_width=float(rng.uniform(0.2, 0.27)),
        glasses=bool(rng.random() < 0.2), beard=beard,
    )


def sample_identity(identity_id: str, split: str, rng: np.random.Generator, reactivity: float | None = None) -> Identity:
    presentation = "f" if rng.random() < 0.5 else "m"
    return Identity(identity_id, split, presentation, sample_style(rng, reactivity), sample_voice(rng, presentation),
                    sample_appearance(rng, presentation))
