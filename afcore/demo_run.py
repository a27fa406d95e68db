"""Running the live demo: the real-time loop (a background thread paced by the wall clock), the paired
smile-reaction check, the rolling parameter plot, and the summary the notebook writes to metrics.json."""
from __future__ import annotations

import io
import threading
import time
from itertools import pairwise

import numpy as np
import torch
from PIL import Image, ImageDraw

from data_prep.schema import VISIBLE_CHANGE

from .demo import FPS, GESTURES, LiveEngine, Scene
from .demo_model import DemoModels


# ------------------------------------------------------------------------------------------------ real time
class RealtimeRunner:
    """Block k (frames 10k..10k+9) is computed once its input has been captured, at t0 + (k+1) x 400 ms, and
    shown from `due + budget` on (a constant play-out delay of one budget). A block that is ready later than
    that is late; more than a whole block behind, the clock is re-anchored (the stream slows down instead
    of drifting ever further behind) and the governor has already dropped NFE."""

    def __init__(self, engine: LiveEngine, on_block=None, on_error=None):
        self.engine, self.on_block, self.on_error = engine, on_block, on_error
        self.block_s = engine.block_ms / 1000
        self.budget_s = engine.governor.budget_ms / 1000
        self._thread, self._stop = None, threading.Event()
        self.t0, self.log, self.resyncs, self.error = None, [], 0, None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def media_frame(self) -> int:
        """The frame the user is 'in' right now (where a click lands); the next block when stopped."""
        if self.t0 is None or not self.running:
            return self.engine.frames_done
        return max(self.engine.frames_done, int((time.perf_counter() - self.t0) * FPS))

    def gesture(self, name: str) -> int:
        return self.engine.gesture(name, self.media_frame())

    def start(self):
        if self.running:
            return
        self._stop.clear()
        # continue the media clock where the engine stands (after a stop, or from 0 after a reset)
        self.t0 = time.perf_counter() - self.engine.frames_done / FPS
        self._thread = threading.Thread(target=self._loop, name="avatar-stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the avatar thread did not stop within {timeout} s (a block is still computing)")

    def _loop(self):
        try:
            while not self._stop.is_set():
                due = self.t0 + (self.engine.frames_done + self.engine.block) / FPS
                if self._stop.wait(max(0.0, due - time.perf_counter())):
                    break
                result = self.engine.step()
                ready = time.perf_counter()
                lag = ready - due
                show_at = max(ready, due + self.budget_s)
                self.log.append({"block": result.index, "lag_ms": round(lag * 1000, 1),
                                 "late": lag > self.budget_s, "nfe": result.nfe})
                if lag > self.block_s:  # behind by more than a block: re-anchor rather than drift
                    self.t0 += lag - self.budget_s
                    self.resyncs += 1
                if self.on_block is not None:
                    self.on_block(result, show_at)
        except Exception as err:  # noqa: BLE001 -- any failure must reach the status line, not die silently
            self.error = f"{type(err).__name__}: {err}"
            if self.on_error is not None:
                self.on_error(self.error)


# ------------------------------------------------------------------------------------------------ summary
def _stats(values) -> dict:
    v = np.asarray(values, float)
    if not len(v):
        return {}
    return {"median": round(float(np.median(v)), 2), "p90": round(float(np.percentile(v, 90)), 2),
            "max": round(float(v.max()), 2), "mean": round(float(v.mean()), 2)}


def session_summary(engine: LiveEngine, runner: RealtimeRunner | None = None, skip: int = 1) -> dict:
    """Per-block compute (incl. decode), real-time factor, NFE changes, lateness and the live reactions.
    The first `skip` blocks are left out of the timing statistics (first-call effects)."""
    res = engine.results
    timed = res[skip:] if len(res) > skip else res
    parts = ("camera_ms", "encode_ms", "step_ms", "decode_ms", "model_ms", "block_ms")
    timing = {p: _stats([r.timing[p] for r in timed]) for p in parts}
    block_ms = engine.block_ms
    med = timing["block_ms"].get("median", float("nan"))
    out = {"blocks": len(res), "seconds": round(engine.frames_done / FPS, 2), "block_duration_ms": block_ms,
           "timing_ms": timing, "real_time_factor": round(med / block_ms, 3),
           "real_time_factor_model_only": round(timing["model_ms"].get("median", float("nan")) / block_ms, 3),
           "motion_latency_ms": round(block_ms + med, 1),  # buffering one block + computing it
           "nfe_target": engine.governor.target, "nfe_used": sorted({r.nfe for r in res}),
           "nfe_changes": [{"block": r.index, "nfe_next": b.nfe, "note": b.note} for r, b in pairwise(res)
                           if b.nfe != r.nfe],
           "notes": _first_notes(res), "events": list(engine.events),
           "live_smile_before_after_uncontrolled": live_reactions(engine)}
    if runner is not None:
        lags = [e["lag_ms"] for e in runner.log]
        out.update(late_blocks=int(sum(e["late"] for e in runner.log)), lag_ms=_stats(lags),
                   resyncs=runner.resyncs, error=runner.error)
    return out


def _first_notes(results, keep: int = 4) -> dict:
    """How often the governor spoke, by kind ('behind', 'slower than real time ...', 'caught up'), with the
    first message of each kind (the numbers in them differ block to block)."""
    out = {}
    for r in results:
        if r.note:
            kind = r.note.split(":")[0]
            out.setdefault(kind, {"count": 0, "first": r.note, "first_block": r.index})["count"] += 1
    return dict(list(out.items())[:keep])


def live_reactions(engine: LiveEngine, column: str = "smile", before_s: float = 1.0, after_s: float = 3.0) -> list:
    """For each user smile of the session: the avatar's smile readout before it and at its highest after it
    (a plain before/after reading; `reaction_check` is the controlled measurement)."""
    _, avatar = engine.track(column)
    out = []
    for e in engine.events:
        if e["event"] != column or e["frame"] + int(after_s * FPS) > len(avatar):
            continue
        f, b = e["frame"], int(before_s * FPS)
        before = float(avatar[max(0, f - b):f].mean()) if f else float(avatar[0])
        window = avatar[f:f + int(after_s * FPS)]
        out.append({"frame": f, "avatar_before": round(before, 4), "avatar_peak_after": round(float(window.max()), 4),
                    "rise": round(float(window.max()) - before, 4),
                    "peak_delay_s": round(float(np.argmax(window)) / FPS, 2)})
    return out


# ------------------------------------------------------------------------------------------------ reaction
def onset(signal: np.ndarray, start: int, frac: float = 0.5) -> float | None:
    """First (interpolated) frame from `start` at which signal rises through frac x its peak after start."""
    y = np.asarray(signal, float)[start:]
    if not len(y) or y.max() <= 0:
        return None
    thr = frac * y.max()
    i = int(np.argmax(y >= thr))
    if i == 0:
        return float(start)
    return start + i - 1 + (thr - y[i - 1]) / (y[i] - y[i - 1])


def reaction_check(models: DemoModels, scene: Scene, *, gesture: str = "smile", column: str = "smile",
                   click_s: float = 2.0, after_s: float = 4.0, seeds=(0, 1, 2), min_rise: float = 0.05,
                   **engine_kw) -> dict:
    """Paired counterfactual: the same session (same noise, same user stream) twice, once with the user's
    gesture at `click_s`. The avatar's readout difference is its reaction and nothing else. Latency = from
    the user's parameter crossing half its rise to the avatar's difference crossing half its peak (media
    time; add one block of buffering and the block's compute for the wall-clock delay), and to the difference
    first reaching VISIBLE_CHANGE ("visible_s"). A run counts as a reaction when the rise exceeds both
    `min_rise` and twice the avatar's own spread of that parameter in the run without the gesture; only then
    are latencies given."""
    click, horizon = int(click_s * FPS), int((click_s + after_s) * FPS)
    g = GESTURES[gesture]
    runs = []
    for seed in seeds:
        tracks = []
        for with_gesture in (False, True):
            engine = LiveEngine(models, scene, seed=seed, adaptive=False, **engine_kw)
            if with_gesture:
                engine.gesture(gesture, click)
            while engine.frames_done < horizon:
                engine.step()
            tracks.append(engine.track(column))
        (_, a0), (u1, a1) = tracks
        diff = (a1 - a0)[:horizon]
        u_on = onset(u1 - u1[click], click)
        peak = float(diff[click:].max())
        natural = float(np.std(a0[:horizon]))  # how much the avatar's smile moves on its own
        reacted = peak > max(min_rise, 2 * natural)
        a_on = onset(diff, click) if reacted else None
        above = np.flatnonzero(diff[click:] >= VISIBLE_CHANGE)
        visible = click + int(above[0]) if reacted and len(above) and u_on is not None else None
        runs.append({"seed": seed, "reacted": bool(reacted), "peak_rise": round(peak, 4), "mean_rise": round(float(diff[click:].mean()), 4),
                     "natural_std": round(natural, 4), "rise_over_natural_std": round(peak / max(natural, 1e-6), 2),
                     "user_onset_frame": u_on, "avatar_onset_frame": a_on,
                     "latency_s": None if a_on is None or u_on is None else round((a_on - u_on) / FPS, 3),
                     "visible_s": None if visible is None else round((visible - u_on) / FPS, 3),
                     "pre_click_max_abs_diff": round(float(np.abs(diff[:click - 2 * engine.block]).max()), 6),
                     "avatar_before": round(float(a1[click - FPS:click].mean()), 4),
                     "avatar_peak_after": round(float(a1[click:horizon].max()), 4),
                     "diff_track": np.round(diff, 4).tolist(), "user_track": np.round(u1[:horizon], 4).tolist()})
    peaks = [r["peak_rise"] for r in runs]
    lat = [r["latency_s"] for r in runs if r["latency_s"] is not None]
    visible_delays = [r["visible_s"] for r in runs if r["visible_s"] is not None]
    return {"gesture": gesture, "column": column, "click_s": click_s, "after_s": after_s, "user_peak": max(g.targets.values(), default=0),
            "nfe": engine.governor.target, "w_audio": engine.w_audio, "w_user": engine.w_user, "runs": runs,
            "reacted_runs": sum(r["reacted"] for r in runs), "min_rise": min_rise,
            "peak_rise_mean": round(float(np.mean(peaks)), 4), "peak_rise_min": round(float(np.min(peaks)), 4),
            "latency_s_mean": round(float(np.mean(lat)), 3) if lat else None,
            "visible_s_median": round(float(np.median(visible_delays)), 3) if visible_delays else None,
            "rise_over_natural_std_mean": round(float(np.mean([r["rise_over_natural_std"] for r in runs])), 2)}


# ------------------------------------------------------------------------------------------------ plot
PLOT_SERIES = (("user smile", "smile", "user", (230, 120, 40)), ("avatar smile", "smile", "avatar", (200, 30, 30)),
               ("user jaw", "jaw_open", "user", (90, 150, 230)), ("avatar jaw", "jaw_open", "avatar", (20, 60, 180)),
               ("user pitch x3", "pitch", "user", (140, 200, 120)), ("avatar pitch x3", "pitch", "avatar", (30, 120, 40)))


def rolling_plot(engine: LiveEngine, seconds: float = 10.0, size=(460, 170)) -> bytes:
    """PNG of the last `seconds` of user (ground truth) and avatar (readout) parameters: drawn with PIL, a few
    ms per update, so it can refresh every block without stealing the model's CPU."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, top, bottom, right = 30, 8, h - 34, w - 6
    lo, hi = -0.3, 1.0
    y_of = lambda v: bottom - (np.clip(v, lo, hi) - lo) / (hi - lo) * (bottom - top)
    for v in (0.0, 0.5, 1.0):
        d.line([(left, y_of(v)), (right, y_of(v))], fill=(225, 225, 225))
        d.text((2, y_of(v) - 6), f"{v:.1f}", fill=(90, 90, 90))
    n = int(seconds * FPS)
    res = engine.results
    if res:
        f1 = engine.frames_done
        for label, col, who, colour in PLOT_SERIES:
            u, a = engine.track(col)
            v = (u if who == "user" else a)[-n:] * (3 if col == "pitch" else 1)
            x = right - (len(v) - 1 - np.arange(len(v))) * (right - left) / max(n - 1, 1)
            d.line(list(zip(x, y_of(v))), fill=colour, width=2 if who == "avatar" else 1)
        for e in engine.events:
            if e["event"] in GESTURES and f1 - n <= e["frame"] < f1:
                x = right - (f1 - 1 - e["frame"]) * (right - left) / max(n - 1, 1)
                d.line([(x, top), (x, bottom)], fill=(160, 160, 160))
                d.text((x + 2, top), e["event"], fill=(90, 90, 90))
    for i, (label, _, _, colour) in enumerate(PLOT_SERIES):
        x, y = left + (i % 3) * 140, bottom + 6 + (i // 3) * 12
        d.line([(x, y + 5), (x + 14, y + 5)], fill=colour, width=2)
        d.text((x + 18, y), label, fill=(40, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def frame_png(frame: np.ndarray, scale: int = 3) -> bytes:
    """uint8 (S, S, 3) -> PNG bytes, enlarged with nearest neighbour (64 px faces are small on screen)."""
    img = Image.fromarray(frame)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def set_threads(threads: int):
    """torch's intra-op threads for this process. 1 by default: on 2 shared cores, 2 threads contend with the
    UI and each other and make blocks several times slower (measured); raise it on a free machine."""
    torch.set_num_threads(max(1, int(threads)))


def reaction_figure(check: dict):
    """The user's smile and the avatar's reaction to it (with minus without the smile), one line per seed."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.subplots()
    runs = check["runs"]
    t = np.arange(len(runs[0]["user_track"])) / FPS
    ax.plot(t, runs[0]["user_track"], color="black", lw=2, label=f"user {check['column']} (rendered, ground truth)")
    for r, colour in zip(runs, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:brown")):
        ax.plot(t, r["diff_track"], lw=1.5, color=colour,
                label=f"avatar {check['column']}, with - without (seed {r['seed']})")
        if r["avatar_onset_frame"] is not None:
            ax.plot(r["avatar_onset_frame"] / FPS, 0.5 * r["peak_rise"], "k|", ms=12)
    ax.axvline(check["click_s"], color="grey", ls=":", lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("media time (s)")
    ax.set_ylabel(f"{check['column']} parameter")
    verdict = (f"half-way latency {check['latency_s_mean']} s" if check["latency_s_mean"] is not None
               else "no reaction above the avatar's own spread")
    ax.set_title(f"{check['gesture']} -> avatar {check['column']}: {check['reacted_runs']}/{len(runs)} runs reacted, "
                 f"mean rise {check['peak_rise_mean']:.3f}, {verdict} (NFE {check['nfe']}, w_u {check['w_user']})",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return fig
