"""Live demo engine (issue 8): an avatar animated block by block by the streaming Session while a user's
face and voice change on the fly. No widgets here, so tests drive every control from plain Python; the UI
is `afcore.demo_widgets`, the real-time loop and the reaction check `afcore.demo_run`.

The user is a recorded stream of a corpus conversation (parameters + voice of one person) re-rendered each
block with the synthetic renderer, so that live gestures (smile, nod, laugh, raised brows, speaking or not)
change the face the autoencoder encodes into the user's motion latents, exactly what a camera would feed.
The avatar is the other person (a held-out identity) or any face image the autoencoder can encode; its
voice is silence ("listening only") or one of its own utterances.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from data_prep.synth.render import FaceRenderer
from data_prep.synth.speech import band_rms, synth_laugh

from .data import frames_to_images, images_to_frames
from .demo_model import DemoModels, _to_size
from .demo_scene import (  # noqa: F401 -- re-exported: the demo's names live in one place for its users
    COL,
    FPS,
    GESTURES,
    NOISE_FLOOR,
    SPF,
    USER_VOICES,
    AvatarSource,
    Gesture,
    Scene,
    UserSource,
    _gesture_end,
    clip_params,
    envelope,
)
from .model import AvatarStream

NFE_MIN = 3  # the step list linspace(1000, 0, nfe - 1) needs nfe >= 3


# ------------------------------------------------------------------------------------------------ governor
class NfeGovernor:
    """Keeps a block's wall time inside the budget: drop NFE at once when a block overruns (sized from the
    measured cost per NFE), creep back up by one after `patience` comfortable blocks. Says what it did."""

    def __init__(self, target: int, budget_ms: float, adaptive: bool = True, headroom: float = 0.85,
                 comfortable: float = 0.55, patience: int = 3):
        self.target, self.budget_ms, self.adaptive = max(NFE_MIN, int(target)), float(budget_ms), adaptive
        self.headroom, self.comfortable, self.patience = headroom, comfortable, patience
        self.nfe, self._calm, self.message = self.target, 0, ""

    def set_target(self, nfe: int):
        self.target = max(NFE_MIN, int(nfe))
        self.nfe, self._calm = self.target, 0

    def update(self, block_ms: float, step_ms: float) -> str:
        """After a block run at self.nfe taking block_ms (of which step_ms scales with NFE): set the next NFE and
        return what the viewer should know now ("" when all is well)."""
        over = block_ms > self.budget_ms
        if not self.adaptive:
            self.message = (f"behind: {block_ms:.0f} ms per block > {self.budget_ms:.0f} ms budget (adaptive NFE "
                            "is off)") if over else ""
            return self.message
        fixed, per_nfe = block_ms - step_ms, step_ms / self.nfe
        if over:
            room = self.headroom * self.budget_ms - fixed
            new = max(NFE_MIN, min(self.nfe - 1, int(room // per_nfe) if per_nfe > 0 else NFE_MIN))
            if new < self.nfe:
                self.message = f"behind: {block_ms:.0f} ms > {self.budget_ms:.0f} ms budget, NFE {self.nfe} -> {new}"
            else:
                self.message = (f"slower than real time even at NFE {NFE_MIN}: {block_ms:.0f} ms per "
                                f"{self.budget_ms:.0f} ms block (x{block_ms / self.budget_ms:.1f})")
            self.nfe, self._calm = new, 0
        elif self.nfe < self.target:
            fits = fixed + per_nfe * (self.nfe + 1) < self.comfortable * self.budget_ms
            self._calm = self._calm + 1 if fits else 0
            if self._calm >= self.patience:
                self.nfe, self._calm = self.nfe + 1, 0
            self.message = (f"reduced to NFE {self.nfe} of {self.target} after falling behind; {block_ms:.0f} ms "
                            f"per block now, stepping back up while blocks stay well inside the budget")
        else:
            self._calm, self.message = 0, ""
        return self.message


# ------------------------------------------------------------------------------------------------ engine
@dataclass
class BlockResult:
    index: int
    frame0: int
    user_frames: np.ndarray  # (n, S, S, 3) uint8
    avatar_frames: np.ndarray
    user_params: np.ndarray  # (n, 10) ground truth of the rendered user face
    avatar_params: np.ndarray  # (n, 10) read out of the avatar's motion latents
    user_audio: np.ndarray  # (n * 640,)
    avatar_audio: np.ndarray
    nfe: int
    timing: dict  # ms: camera (render), encode, step (+ its split), decode, model, block
    note: str = ""


class LiveEngine:
    """One avatar session. `step()` produces the next block; controls may be called from another thread."""

    def __init__(self, models: DemoModels, scene: Scene, *, nfe: int | None = None, w_audio: float | None = None,
                 w_user: float | None = None, seed: int = 0, adaptive: bool = True, budget_ms: float | None = None,
                 keep_seconds: float = 300.0):
        self.models, self.scene, self.seed = models, scene, seed
        cfg = models.cfg
        self.block, self.block_ms = cfg.block, 1000.0 * cfg.block / cfg.fps
        self.size = scene.avatar.reference.shape[0] if models.oracle else models.ae.image_size
        self.governor = NfeGovernor(nfe or cfg.nfe, budget_ms or self.block_ms, adaptive)
        self.w_audio = cfg.w_audio if w_audio is None else float(w_audio)
        self.w_user = cfg.w_user if w_user is None else float(w_user)
        self.keep_blocks = int(keep_seconds * cfg.fps / cfg.block)
        self.renderer = FaceRenderer(scene.user.look, self.size)
        self._lock = threading.Lock()
        if models.oracle:  # no autoencoder: the avatar is drawn from its read-out parameters
            if scene.avatar.look is None:
                raise ValueError("an oracle-latent model draws the avatar with the corpus renderer: pick a corpus "
                                 "person as the avatar, or load an autoencoder model for avatar_image (e.g. bundle=\"autoencoder\")")
            self.avatar_renderer = FaceRenderer(scene.avatar.look, self.size)
            self.m_ref = torch.from_numpy(models.embedding(scene.avatar.reference_params[None])).float()
        else:
            with torch.no_grad():
                ref = _to_size(frames_to_images(scene.avatar.reference[None]), self.size)
                self.z_ref, self.feats_ref = models.ae.encode_identity(ref)
                self.m_ref = models.ae.encode_motion(ref)
        self._warm_up()
        self.reset()

    @torch.no_grad()
    def _warm_up(self):
        """One throw-away block: first calls allocate and pick kernels (~2x slower), which would otherwise
        read as falling behind and make the governor drop NFE for nothing."""
        n, params = self.block, self.scene.user.params[:self.block]
        stream = AvatarStream(self.models.model, self.m_ref, nfe=NFE_MIN)
        quiet = torch.full((1, n * SPF), NOISE_FLOOR)
        for _ in range(2):  # the second block, timed, tells whether even NFE 3 keeps up on this machine
            t0 = time.perf_counter()
            m = stream.step(quiet, quiet, self._user_motion(params, self.renderer.render(params)))
            self._draw_avatar(m[0])
            self.warmup_ms = (time.perf_counter() - t0) * 1000

    def _user_motion(self, params: np.ndarray, frames: np.ndarray) -> torch.Tensor:
        """(1, n, D): the autoencoder's motion code of the rendered frames (or the oracle embedding of the
        parameters they were rendered from)."""
        if self.models.oracle:
            return torch.from_numpy(self.models.embedding(params)).float()[None]
        return self.models.ae.encode_motion(_to_size(frames_to_images(frames), self.size))[None]

    def _draw_avatar(self, latents: torch.Tensor) -> np.ndarray:
        """Motion latents (n, D) -> frames: decode(z_S + m_t, feats_S), or render the oracle's parameters."""
        if self.models.oracle:
            return self.avatar_renderer.render(clip_params(self.models.readout(latents.numpy())))
        z = self.z_ref + latents
        return images_to_frames(self.models.ae.decode(z, [f.expand(len(z), -1, -1, -1) for f in self.feats_ref]))

    # ---------------------------------------------------------------- controls (any thread)
    def reset(self):
        with self._lock:
            self.stream = AvatarStream(self.models.model, self.m_ref, nfe=self.governor.target, w_audio=self.w_audio,
                                       w_user=self.w_user, generator=torch.Generator().manual_seed(self.seed))
            self.governor.set_target(self.governor.target)
            self.rng = np.random.default_rng(self.seed)
            self.frames_done, self.speech_pos = 0, 0
            self.gestures: list[tuple[str, int, np.ndarray | None]] = []
            self.user_voice = "recorded"
            self.avatar_queue = np.zeros(0, np.float32)
            self.avatar_saying = ""
            self.results: list[BlockResult] = []
            self.events: list[dict] = []  # what the user did, when (media frames)

    def gesture(self, name: str, frame: int | None = None) -> int:
        """Start a user gesture at `frame` (default: the next block); frames already generated cannot change."""
        if name not in GESTURES:
            raise KeyError(f"unknown gesture {name!r}; choose from {sorted(GESTURES)}")
        with self._lock:
            start = max(self.frames_done, self.frames_done if frame is None else int(frame))
            sound = None
            if GESTURES[name].laugh_sound:
                sound = synth_laugh(self.scene.user.voice, np.random.default_rng([self.seed, start])).astype(np.float32)
            self.gestures.append((name, start, sound))
            self.events.append({"event": name, "frame": start})
        return start

    def set_user_voice(self, mode: str):
        if mode not in USER_VOICES:
            raise ValueError(f"user voice must be one of {USER_VOICES}, got {mode!r}")
        with self._lock:
            self.user_voice = mode
            self.events.append({"event": f"voice:{mode}", "frame": self.frames_done})

    def say(self, utterance: int | None):
        """Queue one of the avatar's utterances (index), or None: listening only (silence from the next block)."""
        with self._lock:
            if utterance is None or utterance < 0:
                self.avatar_queue, self.avatar_saying = np.zeros(0, np.float32), ""
            else:
                text, audio = self.scene.avatar.utterances[utterance]
                self.avatar_queue, self.avatar_saying = audio.copy(), text
            self.events.append({"event": f"say:{utterance}", "frame": self.frames_done})

    def set_guidance(self, w_audio: float | None = None, w_user: float | None = None):
        with self._lock:
            self.w_audio = self.w_audio if w_audio is None else float(w_audio)
            self.w_user = self.w_user if w_user is None else float(w_user)
            self.stream.session.w_audio, self.stream.session.w_user = self.w_audio, self.w_user

    def set_nfe(self, nfe: int):
        with self._lock:
            self.governor.set_target(nfe)

    # ---------------------------------------------------------------- one block
    def _user_block(self, f0: int, n: int, gestures, voice) -> tuple[np.ndarray, np.ndarray]:
        u = self.scene.user
        idx = (f0 + np.arange(n)) % len(u.params)
        params, audio = u.params[idx].copy(), u.audio[idx].reshape(-1).copy()
        if voice == "speaking":  # the person's own phrases back to back, mouth and all
            sp = u.speech_frames[(self.speech_pos + np.arange(n)) % len(u.speech_frames)]
            self.speech_pos += n
            params[:, COL["jaw_open"]], audio = u.params[sp, COL["jaw_open"]], u.audio[sp].reshape(-1).copy()
        elif voice == "silent":
            params[:, [COL["jaw_open"], COL["laugh"]]] = 0.0
            audio = self.rng.normal(0, NOISE_FLOOR, n * SPF).astype(np.float32)
        frames = f0 + np.arange(n)
        for name, start, sound in gestures:
            g = GESTURES[name]
            tau = (frames - start) / FPS
            env = envelope(tau, g)
            if not env.any():
                continue
            for col, peak in g.targets.items():
                params[:, COL[col]] = np.maximum(params[:, COL[col]], peak * env)
            if g.nod:
                amp, hz = g.nod
                params[:, COL["pitch"]] += np.where(env > 0, amp * np.sin(2 * np.pi * hz * tau) * (1 - 0.5 * tau / g.hold), 0)
            if sound is not None:  # the laugh is heard, and opens the jaw with its loudness
                a = (f0 - start) * SPF
                seg = np.zeros(n * SPF, np.float32)
                src = sound[max(0, a):max(0, a + n * SPF)]
                seg[max(0, -a):max(0, -a) + len(src)] = src[:n * SPF - max(0, -a)]
                audio = audio + seg
                jaw = np.clip((20 * np.log10(band_rms(seg, SPF, 100, 1500)[:n] + 1e-6) + 34) / 20, 0, 1) ** 1.5 * 0.7
                params[:, COL["jaw_open"]] = np.maximum(params[:, COL["jaw_open"]], jaw)
                params[:, COL["pitch"]] -= 0.06 * env * g.targets.get("laugh", 1.0)
        return params, np.clip(audio, -1, 1).astype(np.float32)

    def _avatar_audio(self, n: int) -> np.ndarray:
        take, self.avatar_queue = self.avatar_queue[:n * SPF], self.avatar_queue[n * SPF:]
        if not len(self.avatar_queue):
            self.avatar_saying = ""
        out = self.rng.normal(0, NOISE_FLOOR, n * SPF).astype(np.float32)
        out[:len(take)] += take
        return out

    @torch.no_grad()
    def step(self) -> BlockResult:
        n = self.stream.session.next_block_frames
        t = [time.perf_counter()]
        with self._lock:
            f0, gestures, voice = self.frames_done, list(self.gestures), self.user_voice
            nfe = self.stream.session.nfe = self.governor.nfe
            user_params, user_audio = self._user_block(f0, n, gestures, voice)
            avatar_audio = self._avatar_audio(n)
            self.gestures = [g for g in self.gestures if _gesture_end(*g) > f0]
        user_frames = self.renderer.render(user_params)  # the synthetic camera
        t.append(time.perf_counter())
        user_motion = self._user_motion(user_params, user_frames)
        t.append(time.perf_counter())
        latents = self.stream.step(torch.from_numpy(avatar_audio)[None], torch.from_numpy(user_audio)[None], user_motion)
        t.append(time.perf_counter())
        avatar_frames = self._draw_avatar(latents[0])
        t.append(time.perf_counter())
        avatar_params = self.models.readout(latents[0].numpy())
        ms = np.diff(t) * 1000
        timing = {"camera_ms": ms[0], "encode_ms": ms[1], "step_ms": ms[2], "decode_ms": ms[3],
                  **{k: v for k, v in self.stream.session.last_timing.items()}}
        timing["model_ms"] = ms[1] + ms[2] + ms[3]  # what a live system computes per block
        timing["block_ms"] = (time.perf_counter() - t[0]) * 1000
        note = self.governor.update(timing["block_ms"], timing["step_ms"])
        result = BlockResult(len(self.results), f0, user_frames, avatar_frames, user_params, avatar_params, user_audio,
                             avatar_audio, nfe, {k: round(float(v), 2) for k, v in timing.items()}, note)
        with self._lock:
            self.frames_done = f0 + n
            self.results.append(result)
            if len(self.results) > self.keep_blocks:  # bounded memory in a long session: drop old frames only
                old = self.results[-self.keep_blocks - 1]
                old.user_frames = old.avatar_frames = None
        return result

    # ---------------------------------------------------------------- what happened
    def track(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(user ground truth, avatar readout) of one parameter over the whole session, per frame."""
        c = COL[column]
        if not self.results:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([r.user_params[:, c] for r in self.results]),
                np.concatenate([r.avatar_params[:, c] for r in self.results]))

    def audio(self) -> np.ndarray:
        """(N, 2) float32: the user on the left, the avatar on the right."""
        if not self.results:
            return np.zeros((0, 2), np.float32)
        return np.stack([np.concatenate([r.user_audio for r in self.results]),
                         np.concatenate([r.avatar_audio for r in self.results])], 1)

    def video_frames(self) -> np.ndarray | None:
        """(T, S, 2S, 3) uint8, user | avatar side by side, for the kept part of the session."""
        kept = [r for r in self.results if r.avatar_frames is not None]
        if not kept:
            return None
        return np.concatenate([np.concatenate([r.user_frames, r.avatar_frames], 2) for r in kept])
