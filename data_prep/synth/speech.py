"""Speech for the synthetic corpus: espeak-ng voices (one per identity) or a built-in formant voice.

Every identity gets a small bank of utterances synthesised once (espeak-ng is ~20 ms per call); the
behaviour simulator only places bank entries on a timeline. Laughter is always synthesised here (a
breathy "ha-ha" pulse train), so both backends laugh the same way.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import butter, lfilter, resample_poly, sosfilt

from data_prep.schema import SAMPLE_RATE
from data_prep.synth.identity import Voice

BACKENDS = ("auto", "espeak", "formant")
TARGET_RMS_DB = -20.0  # speech level of the voiced part, dBFS

SENTENCES = (
    "I finally finished painting the kitchen last weekend.", "The train was late again this morning.",
    "We should try the new noodle place near the station.", "My sister just adopted a very small, very loud dog.",
    "I have been learning to play the piano for about a year.", "The weather has been strange all week.",
    "Honestly, I think the first version of the plan was better.", "I read a great book about the history of maps.",
    "We went hiking, and it rained the whole time.", "My neighbour grows tomatoes on his balcony.",
    "I keep forgetting to water my plants.", "The meeting ran over by almost an hour.",
    "I tried baking bread, but it came out like a brick.", "We are thinking about moving closer to the city.",
    "That movie was much funnier than I expected.", "I usually go running early, before work.",
    "The museum has a new exhibition about ocean life.", "My phone battery dies by lunchtime these days.",
    "I think the project will be done by the end of the month.", "We saw a concert in the park on Friday.",
    "My grandmother makes the best soup in the world.", "I started cycling to work, and I really like it.",
    "The bakery on the corner closed down last month.", "I am not sure that is a good idea, to be honest.",
    "We spent the whole afternoon fixing the old bike.", "The kids built a huge castle out of boxes.",
    "I have never seen so much snow in one night.", "Our team finally won a game after ten losses.",
    "I would love to travel to the mountains next summer.", "The coffee at the office is surprisingly good now.",
    "It took me three tries to pass the driving test.", "I learned how to make dumplings from a video.",
    "My brother is studying to become a nurse.", "The library is open late on Thursdays.",
    "I think we need a bigger table for the dinner party.", "The garden looks amazing in the spring.",
    "I lost my keys twice this week.", "We watched the sunrise from the top of the hill.",
    "That restaurant is always full on weekends.", "I am trying to read one book every month.",
    "The new software update broke everything.", "I met an old friend at the supermarket yesterday.",
    "My cat sleeps on my keyboard whenever I work.", "We should plan the trip before prices go up.",
    "I painted the fence blue, and now I regret it.", "The lecture was long, but really interesting.",
    "I think it is going to be a busy week.", "My parents are visiting us next month.",
    "I bought a second hand guitar from a student.", "The view from the bridge is beautiful at night.",
    "We got lost on the way to the wedding.", "I have been sleeping much better lately.",
    "The market sells fresh fish every morning.", "I really enjoyed the festival this year.",
    "My friend opened a small shop downtown.", "Well, it depends on how much time we have.",
    "I was so nervous before the interview.", "The storm knocked over a tree on our street.",
    "We finally fixed the leak in the roof.", "I like to cook something new every Sunday.",
)
QUESTIONS = (
    "What do you think about that?", "Have you ever been there?", "Do you want to come with us?",
    "Did you see the game last night?", "How was your weekend?", "Are you still working on that project?",
    "Would you try it again?", "Where did you grow up?", "Do you like cooking?", "Is that really true?",
    "What would you do in my place?", "Have you read anything good lately?", "Can you believe that?",
    "Do you think it will work?", "When are you going on holiday?", "Did you ever learn an instrument?",
    "Isn't that a bit expensive?", "What was the best part?", "Are you a morning person?",
    "Should we ask the others too?", "Do you remember the name of that place?", "How long did it take you?",
    "Would you like to join us on Saturday?", "Was it as good as they said?",
)
BACKCHANNELS = ("mm-hmm", "yeah", "uh-huh", "right", "okay", "I see", "sure", "wow")


@dataclass
class Utterance:
    text: str
    kind: str  # "speech" | "backchannel"
    audio: np.ndarray  # (N,) float32, 16 kHz, trimmed to the voiced extent
    voiced: list  # [(start_s, end_s)] within the utterance (pauses >= 0.2 s split it)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def is_question(self) -> bool:
        return self.text.endswith("?")


def espeak_path() -> str | None:
    return shutil.which("espeak-ng")


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"voice backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "espeak" if espeak_path() else "formant"
    if backend == "espeak" and not espeak_path():
        raise RuntimeError("espeak-ng is not installed: `apt-get install espeak-ng`, or use --voice formant")
    return backend


def backend_description(backend: str) -> str:
    if backend == "espeak":
        out = subprocess.run([espeak_path(), "--version"], capture_output=True, text=True, check=False).stdout.strip()
        return out.split(":")[0].strip() + " " + out.split()[3] if out else "espeak-ng"
    return "formant (built-in pulse-train + formant-resonator voice)"


def synth_espeak(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng writes 22,050 Hz int16 to a file (its stdout header is unreliable); we resample to 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.wav"
        cmd = [espeak_path(), "-v", voice.espeak, "-s", str(voice.speed), "-p", str(voice.pitch), "-w", str(path), text]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode or not path.exists():
            raise RuntimeError(f"espeak-ng failed for voice {voice.espeak!r}: {res.stderr.strip()}")
        sr, x = wavfile.read(path)
    x = x.astype(np.float32) / 32768.0
    return resample_poly(x, SAMPLE_RATE // 50, sr // 50).astype(np.float32)  # 22050 -> 16000 = 320/441


# ------------------------------------------------------------------ the built-in formant voice
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (300, 2200, 2900), "o": (570, 840, 2410),
          "u": (320, 900, 2300), "y": (300, 2200, 2900)}
FRICATIVES, PLOSIVES = set("sfhzcxvj"), set("ptkbdgq")


def _resonators(x, formants, bandwidths=(80, 100, 140)):
    """Cascade of 2-pole resonators (a crude vocal tract)."""
    for f, bw in zip(formants, bandwidths):
        r = np.exp(-np.pi * bw / SAMPLE_RATE)
        a = [1, -2 * r * np.cos(2 * np.pi * f / SAMPLE_RATE), r * r]
        x = lfilter([sum(a)], a, x)
    return x


def _voiced(f0_curve, formants, breath, rng):
    """Glottal pulse train following f0_curve (N,), through formant resonators, plus breath noise."""
    phase = np.cumsum(f0_curve / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # 1 at each glottal closure
    source = lfilter([1.0], [1, -0.96], pulses) + breath * rng.standard_normal(len(pulses))
    return _resonators(source, formants)


def _band_noise(n, lo, hi, rng):
    sos = butter(4, [lo, min(hi, 7800)], btype="band", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def _envelope(n, attack=0.015, release=0.03):
    env = np.ones(n)
    a, r = max(1, int(attack * SAMPLE_RATE)), max(1, int(release * SAMPLE_RATE))
    env[:a] *= np.linspace(0, 1, min(a, n))[: n] if n >= a else 1
    env[-r:] *= np.linspace(1, 0, min(r, n))
    return env


def synth_formant(text: str, voice: Voice) -> np.ndarray:
    """Syllable plan (onset consonant + vowel per vowel group) -> pulse-train formant speech, 16 kHz."""
    rng = np.random.default_rng(zlib.crc32(f"{voice.espeak}|{text}".encode()))
    tokens = re.findall(r"[a-z']+|[,.?!]", text.lower())
    syllables = []  # (onset, vowel, is_word_start) or ("pause", seconds)
    for tok in tokens:
        if tok in ",.!?":
            syllables.append(("pause", 0.22 if tok == "," else 0.08))
            continue
        for i, (onset, vowel) in enumerate(re.findall(r"([^aeiouy]*)([aeiouy]+)", tok) or [(tok, "e")]):
            syllables.append((onset, vowel[0], i == 0))
    n_syl = max(1, sum(s[0] != "pause" for s in syllables))
    syl_dur = 60.0 / (voice.speed * 1.45)
    question, out, k = text.strip().endswith("?"), [], 0
    for syl in syllables:
        if syl[0] == "pause":
            out.append(np.zeros(int(syl[1] * SAMPLE_RATE)))
            continue
        onset, vowel, word_start = syl
        pos = k / max(1, n_syl - 1)
        k += 1
        f0 = voice.f0 * (1.12 - 0.22 * pos) * (1.08 if word_start else 1.0)
        if question and k > n_syl - 2:
            f0 = voice.f0 * (1.2 + 0.3 * (k - n_syl + 2))
        if word_start:
            out.append(np.zeros(int(0.035 * SAMPLE_RATE)))
        if set(onset) & FRICATIVES:
            out.append(0.12 * _band_noise(int(0.06 * SAMPLE_RATE), 3000, 7500, rng) * _envelope(int(0.06 * SAMPLE_RATE)))
        elif set(onset) & PLOSIVES:
            out.append(np.zeros(int(0.03 * SAMPLE_RATE)))
            out.append(0.2 * _band_noise(int(0.015 * SAMPLE_RATE), 1500, 6000, rng))
        elif onset:
            n = int(0.05 * SAMPLE_RATE)
            out.append(0.3 * _voiced(np.full(n, f0), (300, 1200, 2400), 0.01, rng) * _envelope(n))
        n = int(syl_dur * rng.uniform(0.55, 0.8) * SAMPLE_RATE)
        contour = np.linspace(f0, f0 * (1.1 if question and k > n_syl - 2 else 0.96), n)
        formants = tuple(f * voice.formant_scale for f in VOWELS[vowel])
        out.append(_voiced(contour, formants, 0.02, rng) * _envelope(n, 0.02, 0.04))
    return np.concatenate(out).astype(np.float32)


def synth_laugh(voice: Voice, rng: np.random.Generator, intensity: float = 1.0) -> np.ndarray:
    """A breathy "ha-ha-ha": 3-7 bursts at ~4.5/s, high pitch falling within each burst, decaying."""
    n_bursts = int(rng.integers(3, 5 + int(3 * intensity)))
    parts = []
    for i in range(n_bursts):
        period = rng.uniform(0.19, 0.25)
        h, v = int(0.045 * SAMPLE_RATE), int(period * 0.6 * SAMPLE_RATE)
        f0 = voice.f0 * rng.uniform(1.35, 1.6) * (0.97 ** i)
        vowel = _voiced(np.linspace(f0, 0.88 * f0, v), tuple(f * voice.formant_scale for f in VOWELS["a"]), 0.25, rng)
        burst = np.concatenate([0.25 * _band_noise(h, 500, 3500, rng) * _envelope(h), vowel * _envelope(v, 0.01, 0.05)])
        parts += [burst * 0.85 ** i, np.zeros(int((period - 0.045 - period * 0.6) * SAMPLE_RATE) + int(0.03 * SAMPLE_RATE))]
    x = np.concatenate(parts[:-1])
    return normalise(x, TARGET_RMS_DB - 2 + 4 * (intensity - 1))


# ------------------------------------------------------------------ utilities shared by both backends
def frame_rms(x: np.ndarray, hop: int, win: int | None = None) -> np.ndarray:
    """RMS per hop (window `win` centred on each hop), (ceil(N / hop),)."""
    win = win or hop
    n = -(-len(x) // hop)
    pad = np.pad(np.asarray(x, np.float64) ** 2, (win // 2, win))
    c = np.concatenate([[0.0], np.cumsum(pad)])
    starts = np.arange(n) * hop
    return np.sqrt((c[starts + win] - c[starts]) / win)


def band_rms(x: np.ndarray, hop: int, lo: float, hi: float) -> np.ndarray:
    """RMS of the lo..hi Hz band in Hann windows of 2*hop centred on each hop, (ceil(N / hop),)."""
    n = -(-len(x) // hop)
    padded = np.pad(np.asarray(x, np.float32), (hop, 2 * hop))
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n]  # (n, 2*hop)
    spec = np.abs(np.fft.rfft(frames * np.hanning(2 * hop).astype(np.float32), axis=1)) ** 2
    f = np.fft.rfftfreq(2 * hop, 1 / SAMPLE_RATE)
    return np.sqrt(spec[:, (f >= lo) & (f <= hi)].sum(1) * 2 / (2 * hop) / (0.375 * 2 * hop))


def voiced_segments(x: np.ndarray, min_gap: float = 0.2, min_len: float = 0.05, rel_db: float = -32.0) -> list:
    """[(start_s, end_s)] where the clean utterance is audible (10 ms frames above peak + rel_db)."""
    hop = SAMPLE_RATE // 100
    rms = frame_rms(x, hop)
    on = rms > rms.max() * 10 ** (rel_db / 20) if len(rms) and rms.max() > 0 else np.zeros(len(rms), bool)
    idx = np.flatnonzero(np.diff(np.r_[0, on.astype(int), 0]))
    segs = [[a * 0.01, b * 0.01] for a, b in zip(idx[::2], idx[1::2])]
    merged = []
    for s in segs:
        if merged and s[0] - merged[-1][1] < min_gap:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [(round(float(a), 3), round(float(min(b, len(x) / SAMPLE_RATE)), 3)) for a, b in merged if b - a >= min_len]


def normalise(x: np.ndarray, rms_db: float) -> np.ndarray:
    rms = frame_rms(x, SAMPLE_RATE // 100)
    level = np.sqrt(np.mean(rms[rms > rms.max() * 0.05] ** 2)) if rms.max() > 0 else 1.0
    return (x * (10 ** (rms_db / 20) / max(level, 1e-9))).astype(np.float32)


def make_utterance(text: str, kind: str, voice: Voice, backend: str) -> Utterance:
    x = synth_espeak(text, voice) if backend == "espeak" else synth_formant(text, voice)
    segs = voiced_segments(x)
    if not segs:
        raise RuntimeError(f"{backend} produced silence for {text!r} with voice {voice.espeak!r}")
    a, b = int(segs[0][0] * SAMPLE_RATE), int(segs[-1][1] * SAMPLE_RATE)
    x = x[a:b]
    level = TARGET_RMS_DB + voice.gain_db - (6.0 if kind == "backchannel" else 0.0)
    return Utterance(text, kind, normalise(x, level), [(s - segs[0][0], e - segs[0][0]) for s, e in segs])


def pick_texts(rng: np.random.Generator, n_sentences: int = 18, n_questions: int = 6, n_backchannels: int = 4):
    sents = [SENTENCES[i] for i in rng.choice(len(SENTENCES), n_sentences, replace=False)]
    sents += [QUESTIONS[i] for i in rng.choice(len(QUESTIONS), n_questions, replace=False)]
    return sents, [BACKCHANNELS[i] for i in rng.choice(len(BACKCHANNELS), n_backchannels, replace=False)]


def build_banks(identities, backend: str, seed: int, workers: int = 2) -> dict:
    """identity_id -> {"speech": [Utterance], "backchannel": [Utterance]}; espeak calls run in threads."""
    jobs = []
    for ident in identities:
        rng = np.random.default_rng([seed, zlib.crc32(ident.identity_id.encode())])
        sents, bcs = pick_texts(rng)
        jobs += [(ident, t, "speech") for t in sents] + [(ident, t, "backchannel") for t in bcs]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        utts = list(pool.map(lambda j: make_utterance(j[1], j[2], j[0].voice, backend), jobs))
    banks = {i.identity_id: {"speech": [], "backchannel": []} for i in identities}
    for (ident, _, kind), u in zip(jobs, utts):
        banks[ident.identity_id][kind].append(u)
    return banks
