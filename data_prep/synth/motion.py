"""Realise a conversation plan: per person a 16 kHz track, per-frame parameters (T, 10) and the
ground-truth vocal-activity segments. Mouth opening follows the person's own audio envelope; head motion
is band-limited noise whose energy is high while speaking and low while listening (paper Fig. 5), plus
the planned nods, laughs, smiles, brow raises and gaze shifts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from data_prep.schema import (
    FPS,
    PARAM_COLUMNS,
    POSE_LIMITS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
)
from data_prep.synth.behaviour import Plan
from data_prep.synth.identity import Identity
from data_prep.synth.speech import Utterance, band_rms, voiced_segments

VOICE_BAND = (100.0, 1500.0)  # Hz: the voiced energy that opens the jaw (fricatives barely do)
HEAD_LOWPASS = butter(2, 0.6, fs=FPS, output="sos")
HEAD_NORM = float(np.sqrt(np.sum(sosfilt(HEAD_LOWPASS, np.r_[1.0, np.zeros(499)]) ** 2)))
POSE_SCALE = np.array([0.10, 0.07, 0.045])  # yaw, pitch, roll std (rad) of a speaker with head_energy 1
LISTEN_GAIN = 0.3  # listener head-motion energy relative to speaking
NOISE_DB = -60.0  # room noise floor of every track


@dataclass
class PersonTrack:
    audio: np.ndarray  # (N,) float32, 16 kHz, N = T * 640
    params: np.ndarray  # (T, 10) float32, PARAM_COLUMNS
    segments: list  # [(start_s, end_s, kind)] vocal activity, kind in VOCAL_KINDS
    phrases: list  # [(start_s, end_s, text, is_question, was_cut)]


def _place(track, start_s, x, stop_s=None):
    a = int(round(start_s * SAMPLE_RATE))
    x = x[: max(0, int(round((stop_s - start_s) * SAMPLE_RATE)))] if stop_s is not None else x
    if stop_s is not None and len(x):  # a cut phrase fades out over 30 ms
        n = min(len(x), int(0.03 * SAMPLE_RATE))
        x = x.copy()
        x[-n:] *= np.linspace(1, 0, n)
    x = x[: max(0, len(track) - a)]
    track[a:a + len(x)] += x


def _bump(t, onset, duration, attack, release):
    """Raised-cosine episode envelope on frame times t: 0 -> 1 in `attack`, hold, 1 -> 0 in `release`."""
    rise = np.clip((t - onset) / attack, 0, 1)
    fall = np.clip((onset + max(duration, attack) + release - t) / release, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def _mask(t, spans):
    m = np.zeros(len(t))
    for a, b in spans:
        m[(t >= a) & (t < b)] = 1.0
    return m


def realise(plan: Plan, people: dict[str, Identity], rng: np.random.Generator) -> dict[str, PersonTrack]:
    T = int(round(plan.duration * FPS))
    t = np.arange(T) / FPS
    out = {}
    for p in ("A", "B"):
        style = people[p].style
        clean, segments, phrases = np.zeros(T * SAMPLES_PER_FRAME, np.float32), [], []
        for ph in (ph for ph in plan.phrases if ph.person == p):
            _place(clean, ph.start, ph.utt.audio, ph.cut)
            segments += [(ph.start + a, min(ph.start + b, ph.end), "speech") for a, b in ph.utt.voiced if ph.start + a < ph.end - 0.02]
            phrases.append((ph.start, ph.end, ph.utt.text, ph.utt.is_question, ph.cut is not None))
        for person, start, kind, sound in plan.vocal:
            if person == p:
                audio = sound.audio if isinstance(sound, Utterance) else sound
                voiced = sound.voiced if isinstance(sound, Utterance) else voiced_segments(audio, min_gap=0.25)
                _place(clean, start, audio)
                segments += [(start + a, min(start + b, plan.duration), kind) for a, b in voiced if start + a < plan.duration]
        noise = lfilter([1.0], [1, -0.9], rng.standard_normal(len(clean)))
        noise *= 10 ** (NOISE_DB / 20) / noise.std()
        speaking = _mask(t, [(a, b) for a, b, *_ in phrases])
        params = _params(t, clean, speaking, plan.episodes, p, style, rng)
        out[p] = PersonTrack(audio=np.clip(clean + noise, -1, 1).astype(np.float32), params=params,
                             segments=sorted((round(a, 4), round(b, 4), k) for a, b, k in segments), phrases=phrases)
    return out


def _params(t, clean, speaking, episodes, person, style, rng) -> np.ndarray:
    T, col = len(t), {c: i for i, c in enumerate(PARAM_COLUMNS)}
    P = np.zeros((T, len(PARAM_COLUMNS)))
    eps = [e for e in episodes if e["person"] == person]
    ex = style.expressiveness
    # jaw: in-band loudness of one's own voice, in dB, mapped to [0, 1] (laughter opens it too)
    env = band_rms(clean, SAMPLES_PER_FRAME, *VOICE_BAND)[:T]
    jaw = np.clip((20 * np.log10(env + 1e-6) + 34) / 20, 0, 1) ** 1.5 * (0.5 + 0.4 * ex)
    P[:, col["jaw_open"]] = np.convolve(jaw, [0.25, 0.5, 0.25], mode="same")
    laugh = np.zeros(T)
    for e in eps:
        if e["kind"] == "laugh":
            laugh = np.maximum(laugh, e["amplitude"] * _bump(t, e["onset"], e["duration"], 0.08, 0.3))
    P[:, col["laugh"]] = laugh
    smile = np.full(T, style.smile_base)
    for e in eps:
        if e["kind"] == "smile":
            smile = np.maximum(smile, e["amplitude"] * _bump(t, e["onset"], e["duration"], 0.25, 0.4))
    P[:, col["smile"]] = np.maximum(smile, 0.9 * laugh)
    # brows: reactions to questions, plus emphasis flashes while speaking
    brow = np.zeros(T)
    for e in eps:
        if e["kind"] == "brow":
            brow = np.maximum(brow, e["amplitude"] * _bump(t, e["onset"], e["duration"], 0.12, 0.25))
    for t0 in np.cumsum(rng.exponential(1 / (0.1 + 0.4 * ex), int(t[-1] * 0.6) + 2)):
        if t0 < t[-1] and speaking[min(T - 1, int(t0 * FPS))]:
            brow = np.maximum(brow, rng.uniform(0.3, 0.7) * (0.4 + 0.6 * ex) * _bump(t, t0, rng.uniform(0.2, 0.4), 0.1, 0.2))
    P[:, col["brow_raise"]] = brow
    # blinks: Poisson, more often while speaking than while listening (Bentivoglio et al. 1997); 5-frame lids
    blink, last = np.zeros(T), -10
    profile = np.array([0.45, 1.0, 1.0, 0.55, 0.15])
    rate = style.blink_rate * (0.8 + 0.7 * speaking)  # per second, per frame state
    for k in np.cumsum(rng.exponential(FPS / rate.max(), int(t[-1] * rate.max() * 1.5) + 5)).astype(int):
        if k + len(profile) <= T and k - last >= 6 and rng.random() < rate[k] / rate.max():  # thinning
            blink[k:k + len(profile)] = np.maximum(blink[k:k + len(profile)], profile)
            last = k
    P[:, col["blink"]] = blink
    # gaze: at the partner (the camera) by default, away during planned aversions, with fixational drift
    gaze = sosfilt(butter(1, 2.0, fs=FPS, output="sos"), rng.normal(0, 0.12, (T, 2)), axis=0)
    for e in eps:
        if e["kind"] == "gaze_away":
            gaze += np.outer(_bump(t, e["onset"], e["duration"], 0.08, 0.08), e["target"])
    P[:, col["gaze_x"]], P[:, col["gaze_y"]] = np.clip(gaze, -1, 1).T
    # head pose: band-limited noise, energy switched by speaking (ramped over 0.3 s), posture offset
    gain = style.head_energy * (LISTEN_GAIN + (1 - LISTEN_GAIN) * np.convolve(speaking, np.ones(8) / 8, mode="same"))
    pose = sosfilt(HEAD_LOWPASS, rng.standard_normal((T, 3)) * gain[:, None], axis=0) / HEAD_NORM * POSE_SCALE
    pose += rng.uniform(-1, 1, 3) * np.array([0.08, 0.05, 0.05])
    emphasis = P[:, col["jaw_open"]] - np.convolve(P[:, col["jaw_open"]], np.ones(13) / 13, mode="same")
    pose[:, 1] += 0.06 * style.head_energy * emphasis * speaking  # head beats on stressed syllables
    pose[:, 0] += 0.03 * style.head_energy * np.roll(emphasis, 2) * speaking
    for e in eps:
        tau = t - e["onset"]
        on = (tau >= 0) & (tau < e["duration"])
        if e["kind"] == "nod":  # down first, damped
            pose[on, 1] += e["amplitude"] * np.sin(2 * np.pi * e["freq"] * tau[on]) * (1 - 0.5 * tau[on] / e["duration"])
        elif e["kind"] == "laugh":  # head back and bouncing
            env = _bump(t, e["onset"], e["duration"], 0.1, 0.3)
            pose[:, 1] -= env * (0.06 + 0.025 * np.sin(2 * np.pi * 4.5 * np.clip(tau, 0, None))) * e["amplitude"]
    limits = np.array([POSE_LIMITS[c] for c in ("yaw", "pitch", "roll")])
    P[:, col["yaw"]:col["roll"] + 1] = np.clip(pose, -limits, limits)
    return P.astype(np.float32)
