"""The live demo's sources: the user (a recorded corpus person, re-rendered every block so that live gestures
and voice changes reach the model as a camera would deliver them) and the avatar (a held-out corpus person or
any face image, and its own utterances). See afcore.demo for the engine that animates them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.corpus import Corpus
from data_prep.schema import PARAM_COLUMNS, POSE_LIMITS
from data_prep.synth.identity import Appearance, Voice

FPS, SPF = 25, 640
NOISE_FLOOR = 10 ** (-60 / 20)  # the corpus' tracks carry a -60 dBFS floor: digital silence would be unseen input
COL = {c: i for i, c in enumerate(PARAM_COLUMNS)}


# ------------------------------------------------------------------------------------------------ gestures
@dataclass(frozen=True)
class Gesture:
    targets: dict  # column -> peak value (raised to at least this)
    attack: float  # seconds, raised-cosine ramps
    hold: float
    release: float
    nod: tuple = ()  # (amplitude rad, Hz): pitch dips down first, damped, as the corpus' nods
    laugh_sound: bool = False

    @property
    def seconds(self) -> float:
        return self.attack + self.hold + self.release


GESTURES = {
    "smile": Gesture({"smile": 0.9}, 0.3, 2.5, 0.5),
    "nod": Gesture({}, 0.0, 0.85, 0.0, nod=(0.12, 2.4)),
    "laugh": Gesture({"laugh": 0.9, "smile": 0.85}, 0.1, 1.3, 0.3, laugh_sound=True),
    "brows": Gesture({"brow_raise": 0.85}, 0.12, 0.8, 0.25),
}
USER_VOICES = ("recorded", "speaking", "silent")  # follow the recording / talk continuously / stay quiet


def envelope(tau: np.ndarray, g: Gesture) -> np.ndarray:
    """0 before the onset, raised-cosine attack, hold, raised-cosine release, 0 after."""
    up = 0.5 - 0.5 * np.cos(np.pi * np.clip(tau / g.attack, 0, 1)) if g.attack else np.ones_like(tau)
    down = 0.5 + 0.5 * np.cos(np.pi * np.clip((tau - g.attack - g.hold) / g.release, 0, 1)) if g.release \
        else (tau <= g.attack + g.hold).astype(float)
    return np.where(tau >= 0, up * down, 0.0)


def _gesture_end(name: str, start: int, sound) -> int:
    """First frame after a gesture (its face and its sound) is over."""
    return start + int(np.ceil(max(GESTURES[name].seconds * FPS, 0 if sound is None else len(sound) / SPF))) + 1


def _record(row, prefix: str) -> dict:
    return {k[len(prefix):]: (tuple(int(x) for x in v) if isinstance(v, (list, np.ndarray)) else v)
            for k, v in row.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------------------------ sources
@dataclass
class UserSource:
    params: np.ndarray  # (T, 10) the recorded person's parameters
    audio: np.ndarray  # (T, 640) float32, its voice per frame
    look: Appearance
    voice: Voice
    speech_frames: np.ndarray  # frames inside its speech segments, for "speaking"
    label: str = ""


@dataclass
class AvatarSource:
    reference: np.ndarray  # (S, S, 3) uint8, the face to animate
    utterances: list  # [(text, audio (N,) float32)]
    label: str = ""
    look: Appearance | None = None  # a corpus person's look and reference parameters: what oracle latents need
    reference_params: np.ndarray | None = None


def clip_params(params: np.ndarray) -> np.ndarray:
    """Parameters into the renderer's ranges: expression 0..1 (gaze -1..1), pose within its limits."""
    lo = np.array([-POSE_LIMITS.get(c, 1.0) if c in POSE_LIMITS or c.startswith("gaze") else 0.0 for c in PARAM_COLUMNS])
    hi = np.array([POSE_LIMITS.get(c, 1.0) for c in PARAM_COLUMNS])
    return np.clip(params, lo, hi).astype(np.float32)


@dataclass
class Scene:
    user: UserSource
    avatar: AvatarSource
    info: dict = field(default_factory=dict)

    @classmethod
    def from_corpus(cls, corpus_dir, conversation: str = "", avatar_person: str = "A", avatar_image: str = "",
                    max_utterances: int = 12) -> Scene:
        """A conversation of the corpus (default: the first of the held-out test split): `avatar_person` plays
        the avatar, the other one the user. `avatar_image`: animate this picture instead (any RGB image)."""
        corpus = Corpus(corpus_dir)
        convs = corpus.conversations
        if not conversation:
            held_out = convs[convs.split == "test"]
            conversation = (held_out if len(held_out) else convs).conversation_id.iloc[0]
        elif conversation not in set(convs.conversation_id):
            raise KeyError(f"no conversation {conversation!r} in {corpus_dir}; choose from {list(convs.conversation_id)}")
        user_person = {"A": "B", "B": "A"}[avatar_person]
        ids = corpus.identities.set_index("identity")
        ident = {p: corpus.manifest[(corpus.manifest.conversation_id == conversation)
                                    & (corpus.manifest.person == p)].identity.iloc[0] for p in (avatar_person, user_person)}
        s = corpus.stream(conversation, user_person)
        params = np.asarray(s["params"], np.float32)
        T = len(params)
        audio = (np.asarray(s["audio"][:T * SPF], np.float32) / 32768.0).reshape(T, SPF)
        seg = corpus.segments
        speech = seg[(seg.conversation_id == conversation) & (seg.person == user_person) & (seg.kind == "speech")]
        speech_frames = np.concatenate([np.arange(int(a * FPS), min(T, int(b * FPS))) for a, b in
                                        zip(speech.start, speech.end)] or [np.arange(T)])
        user = UserSource(params, audio, Appearance(**_record(ids.loc[ident[user_person]], "look_")),
                          Voice(**_record(ids.loc[ident[user_person]], "voice_")), speech_frames,
                          f"{conversation} {user_person} ({ident[user_person]})")
        a = corpus.stream(conversation, avatar_person)
        if avatar_image:  # centre-cropped to a square (the autoencoder's input); resized by the engine
            from PIL import Image
            img = Image.open(avatar_image).convert("RGB")
            side = min(img.size)
            reference = np.asarray(img.crop(((img.width - side) // 2, (img.height - side) // 2,
                                             (img.width + side) // 2, (img.height + side) // 2)))
            label, look, ref_params = Path(avatar_image).name, None, None
        else:  # the calmest of the first 10 s: a neutral reference, as a portrait photo would be
            p = np.asarray(a["params"][:250])
            calm = p[:, [COL["jaw_open"], COL["smile"], COL["laugh"], COL["brow_raise"], COL["blink"]]].sum(1) \
                + np.abs(p[:, [COL["yaw"], COL["pitch"], COL["roll"]]]).sum(1)
            reference, ref_params = np.asarray(a["frames"][int(np.argmin(calm))]), p[int(np.argmin(calm))].copy()
            label = f"{conversation} {avatar_person} ({ident[avatar_person]})"
            look = Appearance(**_record(ids.loc[ident[avatar_person]], "look_"))
        ph = corpus.phrases
        mine = ph[(ph.conversation_id == conversation) & (ph.person == avatar_person)].head(max_utterances)
        utterances = [(t, np.asarray(a["audio"][int(s0 * 16000):int(s1 * 16000)], np.float32) / 32768.0)
                      for t, s0, s1 in zip(mine.text, mine.start, mine.end)]
        info = {"corpus": str(corpus_dir), "conversation": conversation, "avatar": label, "user": user.label,
                "split": str(convs.set_index("conversation_id").split[conversation])}
        return cls(user, AvatarSource(reference, utterances, label, look, ref_params), info)
