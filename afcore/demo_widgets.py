"""The live demo's ipywidgets UI: the user's face beside the avatar at 25 fps, gesture buttons (and keys),
the avatar's voice, guidance and NFE sliders, start/stop/reset, per-block compute and latency, and a rolling
plot of user and avatar expression parameters. Every control is a plain method or widget callback, so tests
drive it without a kernel (`button.click()`, `slider.value = ...`)."""
from __future__ import annotations

import html
import io
import os
import threading
import time
from pathlib import Path

import ipywidgets as w
import numpy as np
from scipy.io import wavfile

from .demo import FPS, GESTURES, USER_VOICES, BlockResult, LiveEngine
from .demo_run import RealtimeRunner, frame_png, rolling_plot, session_summary


def served_by_voila() -> bool:
    """True inside a kernel Voila started (it sets these variables): the page is live, nothing to drive."""
    return any(k in os.environ for k in ("VOILA_KERNEL_ID", "VOILA_SERVER_URL", "VOILA_REQUEST_URL"))


READOUT_SHOWN = (("smile", "smile", "smile"), ("jaw", "jaw", "jaw_open"), ("pitch", "pitch", "pitch"))  # per block
KEYS = {"s": "smile", "n": "nod", "l": "laugh", "b": "brows"}
BUTTONS = {"smile": "Smile", "nod": "Nod", "laugh": "Laugh", "brows": "Raise brows"}


class DemoUI:
    def __init__(self, engine: LiveEngine, *, scale: int | None = None, plot_seconds: float = 10.0):
        self.engine, self.plot_seconds = engine, plot_seconds
        self.scale = scale or max(1, 192 // engine.size)
        self.runner = RealtimeRunner(engine, on_block=self._on_block, on_error=lambda _e: self._refresh_text(None))
        self._frames: list[tuple[float, np.ndarray, np.ndarray]] = []  # (show at, user, avatar) play-out queue
        self._frames_lock, self._display_stop = threading.Lock(), threading.Event()
        self._display_thread = None
        cfg, blank = engine.models.cfg, frame_png(engine.scene.avatar.reference, self.scale)
        self.user_image = w.Image(value=blank, format="png", layout=w.Layout(border="1px solid #ccc"))
        self.avatar_image = w.Image(value=blank, format="png", layout=w.Layout(border="1px solid #ccc"))
        self.plot = w.Image(value=rolling_plot(engine, plot_seconds), format="png")
        self.gesture_buttons = {g: w.Button(description=BUTTONS[g], tooltip=f"key: {k}") for k, g in
                                ((k, g) for k, g in KEYS.items())}
        for g, b in self.gesture_buttons.items():
            b.on_click(lambda _b, g=g: self.gesture(g))
        self.keys = w.Text(placeholder="keys: s smile, n nod, l laugh, b brows", continuous_update=True,
                           layout=w.Layout(width="260px"))
        self.keys.observe(self._on_key, names="value")
        self.user_voice = w.ToggleButtons(options=[("follow recording", "recorded"), ("speaking", "speaking"),
                                                   ("silent", "silent")], value="recorded", description="user voice")
        self.user_voice.observe(lambda c: engine.set_user_voice(c["new"]), names="value")
        choices = [("listening only", -1)] + [(f"{i + 1}: {t[:48]}", i) for i, (t, _) in enumerate(engine.scene.avatar.utterances)]
        self.avatar_speech = w.Dropdown(options=choices, value=-1, description="avatar says",
                                        layout=w.Layout(width="420px"))
        self.avatar_speech.observe(lambda c: engine.say(c["new"]), names="value")
        self.say_again = w.Button(description="Say it again", tooltip="replay the chosen utterance")
        self.say_again.on_click(lambda _b: engine.say(self.avatar_speech.value))
        self.w_audio = w.FloatSlider(value=engine.w_audio, min=0, max=4, step=0.1, description="w_a (audio)")
        self.w_user = w.FloatSlider(value=engine.w_user, min=0, max=4, step=0.1, description="w_u (user)")
        self.nfe = w.IntSlider(value=engine.governor.target, min=3, max=max(20, cfg.nfe), description="NFE")
        self.w_audio.observe(lambda c: engine.set_guidance(w_audio=c["new"]), names="value")
        self.w_user.observe(lambda c: engine.set_guidance(w_user=c["new"]), names="value")
        self.nfe.observe(lambda c: engine.set_nfe(c["new"]), names="value")
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop")
        self.reset_button = w.Button(description="Reset", icon="refresh")
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.reset_button.on_click(lambda _b: self.reset())
        self.status = w.HTML()
        self.readout = w.HTML()
        self.audio = w.Audio(value=b"", format="wav", autoplay=False, loop=False)
        self.audio.layout.display = "none"
        self.warning = w.HTML(self._speed_warning())
        self._refresh_text(None)

    # ---------------------------------------------------------------- layout
    @property
    def widget(self) -> w.Widget:
        e = self.engine
        faces = w.HBox([w.VBox([w.HTML(f"<b>user</b> {html.escape(e.scene.user.label)}"), self.user_image]),
                        w.VBox([w.HTML(f"<b>avatar</b> {html.escape(e.scene.avatar.label)}"), self.avatar_image]),
                        w.VBox([w.HTML("<b>expression</b> (user: ground truth, avatar: readout of its latents)"),
                                self.plot])])
        return w.VBox([self.warning, faces,
                       w.HBox([*self.gesture_buttons.values(), self.keys]), self.user_voice,
                       w.HBox([self.avatar_speech, self.say_again]), w.HBox([self.w_audio, self.w_user, self.nfe]),
                       w.HBox([self.start_button, self.stop_button, self.reset_button]),
                       self.status, self.readout, self.audio])

    def _speed_warning(self) -> str:
        e, cfg = self.engine, self.engine.models.cfg
        if e.warmup_ms <= e.governor.budget_ms:
            return ""
        return (f"<span style='color:#b45309'>Config {html.escape(cfg.name)}: one block takes {e.warmup_ms:.0f} ms at "
                f"NFE 3 on this machine, more than the {e.block_ms:.0f} ms it lasts, so the demo runs slower than real "
                f"time (about x{e.warmup_ms / e.block_ms:.1f}); it drops to NFE 3 and says so. A GPU makes it live.</span>")

    # ---------------------------------------------------------------- controls
    def start(self):
        if self.runner.running:
            return
        self.audio.layout.display = "none"
        self._display_stop.clear()
        self._display_thread = threading.Thread(target=self._display_loop, name="avatar-display", daemon=True)
        self._display_thread.start()
        self.runner.start()
        self._refresh_text(None)

    def stop(self):
        self.runner.stop()
        self._display_stop.set()
        if self._display_thread is not None:
            self._display_thread.join(5)
        self._flush_frames()
        self.audio.value = self.wav_bytes()
        self.audio.layout.display = None if len(self.audio.value) > 44 else "none"
        self._refresh_text(None)

    def reset(self):
        was_running = self.runner.running
        if was_running:
            self.stop()
        self.engine.reset()
        self.user_voice.value, self.avatar_speech.value = "recorded", -1
        self.runner = RealtimeRunner(self.engine, on_block=self._on_block, on_error=lambda _e: self._refresh_text(None))
        with self._frames_lock:
            self._frames.clear()
        self.avatar_image.value = frame_png(self.engine.scene.avatar.reference, self.scale)
        self.plot.value = rolling_plot(self.engine, self.plot_seconds)
        self.audio.layout.display = "none"
        self._refresh_text(None)
        if was_running:
            self.start()

    def gesture(self, name: str) -> int:
        return self.runner.gesture(name)

    def _on_key(self, change):
        text = change["new"]
        if not text:
            return
        for ch in text.lower():
            if ch in KEYS:
                self.gesture(KEYS[ch])
        self.keys.value = ""

    # ---------------------------------------------------------------- stream -> screen
    def _on_block(self, result: BlockResult, show_at: float):
        with self._frames_lock:
            self._frames += [(show_at + i / FPS, u, a) for i, (u, a) in
                             enumerate(zip(result.user_frames, result.avatar_frames))]
        self.plot.value = rolling_plot(self.engine, self.plot_seconds)
        self._refresh_text(result)

    def _display_loop(self):
        while not self._display_stop.is_set():
            with self._frames_lock:
                due = self._frames and self._frames[0][0] <= time.perf_counter()
                item = self._frames.pop(0) if due else None
                wait = (self._frames[0][0] - time.perf_counter()) if (self._frames and not due) else 0.01
            if item is not None:
                self.user_image.value, self.avatar_image.value = frame_png(item[1], self.scale), frame_png(item[2], self.scale)
            else:
                self._display_stop.wait(min(max(wait, 0.002), 0.04))

    def _flush_frames(self):
        """On stop: show the newest generated frame, drop the rest of the play-out queue."""
        with self._frames_lock:
            last, self._frames = (self._frames[-1] if self._frames else None), []
        if last is not None:
            self.user_image.value, self.avatar_image.value = frame_png(last[1], self.scale), frame_png(last[2], self.scale)

    def _refresh_text(self, r: BlockResult | None):
        e, run = self.engine, self.runner
        r = r or (e.results[-1] if e.results else None)
        state = "running" if run.running else ("stopped" if e.results else "ready: press Start")
        if run.error:
            state = f"<span style='color:#b91c1c'>stopped by an error: {html.escape(run.error)}</span>"
        parts = [f"<b>{state}</b>", f"{e.frames_done / FPS:.1f} s", f"block {len(e.results)}"]
        note = ""
        if r is not None:
            t = r.timing
            parts += [f"NFE {r.nfe}" + (f" (of {e.governor.target})" if r.nfe < e.governor.target else ""),
                      (f"compute {t['block_ms']:.0f} ms per {e.block_ms:.0f} ms block "
                       f"(encode {t['encode_ms']:.0f}, step {t['step_ms']:.0f}, decode {t['decode_ms']:.0f}, "
                       f"camera {t['camera_ms']:.0f})"),
                      f"real-time factor {t['block_ms'] / e.block_ms:.2f}",
                      f"latency {e.block_ms + t['block_ms']:.0f} ms (one block buffered + its compute)"]
            note = r.note
        late = sum(x["late"] for x in run.log)
        if late:
            parts.append(f"{late} late blocks")
        self.status.value = " · ".join(parts) + (
            f"<br><span style='color:#b45309'>{html.escape(note)}</span>" if note else "")
        if e.results:
            u, a = e.results[-1].user_params, e.results[-1].avatar_params
            saying = f" · avatar saying: “{html.escape(e.avatar_saying[:60])}”" if e.avatar_saying else ""
            self.readout.value = " · ".join(
                f"{who} {name} <span id='{who}-{tag}'>{p[:, e.models.readout.index(col)].mean():.3f}</span>"
                for name, tag, col in READOUT_SHOWN for who, p in (("user", u), ("avatar", a))) + saying
        else:
            self.readout.value = " · ".join(f"{who} {name} <span id='{who}-{tag}'>-</span>"
                                            for name, tag, col in READOUT_SHOWN for who in ("user", "avatar"))

    # ---------------------------------------------------------------- recording and headless runs
    def wav_bytes(self) -> bytes:
        """The session so far as a stereo WAV: the user left, the avatar right."""
        buf = io.BytesIO()
        wavfile.write(buf, 16000, (np.clip(self.engine.audio(), -1, 1) * 32767).astype(np.int16))
        return buf.getvalue()

    def save_recording(self, path) -> Path | None:
        """user | avatar side by side with both voices mixed, as an mp4 (None if nothing was generated)."""
        from data_prep.media import write_mp4
        frames = self.engine.video_frames()
        if frames is None:
            return None
        big = frames.repeat(2, 1).repeat(2, 2)
        audio = self.engine.audio()[-len(frames) * 640:].sum(1)
        return write_mp4(path, big, np.clip(audio, -1, 1), FPS)

    def drive(self, seconds: float, script=()) -> dict:
        """Run in real time for `seconds`, pressing the controls of `script` [(at seconds, action)] on time,
        where action is a gesture name, 'voice:<mode>', 'say:<index>' or 'nfe:<n>'; then stop and summarise."""
        self.start()
        t0 = time.perf_counter()
        for at, action in sorted(script, key=lambda s: s[0]):
            if at >= seconds:
                break
            time.sleep(max(0.0, t0 + at - time.perf_counter()))
            self._press(action)
        time.sleep(max(0.0, t0 + seconds - time.perf_counter()))
        self.stop()
        return session_summary(self.engine, self.runner)

    def _press(self, action: str):
        kind, _, arg = action.partition(":")
        if kind in GESTURES:
            self.gesture_buttons[kind].click()
        elif kind == "voice" and arg in USER_VOICES:
            self.user_voice.value = arg
        elif kind == "say":
            self.avatar_speech.value = int(arg)
        elif kind == "nfe":
            self.nfe.value = int(arg)
        else:
            raise ValueError(f"unknown scripted action {action!r}: use a gesture {sorted(GESTURES)}, "
                             f"'voice:<{'|'.join(USER_VOICES)}>', 'say:<utterance index>' or 'nfe:<n>'")
