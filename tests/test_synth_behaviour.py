"""The simulated behaviour matches its rule table, measured back from the generated signals."""
from dataclasses import replace

import numpy as np
import pytest

from data_prep import report
from data_prep.schema import (
    EXPRESSION_SLICE,
    FPS,
    POSE_SLICE,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    column_index,
)
from data_prep.synth import speech
from data_prep.synth.behaviour import REACTION_RULES, plan_conversation
from data_prep.synth.identity import sample_identity
from data_prep.synth.motion import realise

DURATION = 150.0


def _people(seed=0, **style):
    rng = np.random.default_rng(seed)
    people = {p: sample_identity(f"t{p}", "train", rng) for p in "AB"}
    return {p: replace(i, style=replace(i.style, **style)) for p, i in people.items()}


@pytest.fixture(scope="module")
def sim():
    people = _people(p_nod=0.9, p_smile_mirror=0.9, p_laugh_back=0.9, p_brow_question=0.95, laugh_rate=0.2,
                     p_backchannel=0.25)
    banks = speech.build_banks(people.values(), speech.resolve_backend("auto"), seed=0)
    plan = plan_conversation(people, banks, DURATION, np.random.default_rng(1))
    tracks = realise(plan, people, np.random.default_rng(1))
    return people, banks, plan, tracks


def _events(plan, kind):
    return [e for e in plan.events if e["kind"] == kind]


def test_every_reaction_kind_occurs_within_its_rule_latency(sim):
    _, _, plan, _ = sim
    for kind, rule in REACTION_RULES.items():
        evs = _events(plan, kind)
        assert evs, f"no {kind} in {DURATION} s with reactive listeners"
        lat = np.array([e["latency"] for e in evs])
        lo, hi = rule["latency"]
        assert lat.min() >= lo - 1e-6 and lat.max() <= hi + 1e-6, (kind, lat)


def test_nod_onsets_measured_from_pitch_match_the_log_and_the_rule(sim):
    _, _, plan, tracks = sim
    nods = _events(plan, "nod")
    assert len(nods) >= 8
    measured = np.concatenate([
        report.nod_onsets(tracks[p].params[:, column_index("pitch")].astype(np.float64),
                          [e["trigger_time"] for e in nods if e["person"] == p]) for p in "AB"])
    logged = np.concatenate([[e["latency"] for e in nods if e["person"] == p] for p in "AB"])
    assert np.isfinite(measured).mean() >= 0.9
    ok = np.isfinite(measured)
    assert np.mean(np.abs(measured[ok] - logged[ok]) <= 1.5 / FPS) >= 0.9  # within a frame and a half
    assert np.all((measured[ok] >= 0.2 - 0.06) & (measured[ok] <= 0.6 + 0.06))


def test_no_nod_detected_where_none_was_planned(sim):
    _, _, plan, tracks = sim
    nodded = {(e["person"], e["trigger_time"]) for e in _events(plan, "nod")}
    quiet = {p: [] for p in "AB"}
    for ph in plan.phrases:
        lis = "B" if ph.person == "A" else "A"
        listener_silent = all(q.person != lis or q.end < ph.end - 0.5 or q.start > ph.end + 1.0 for q in plan.phrases)
        no_vocal = all(v[0] != lis or abs(v[1] - ph.end) > 1.5 for v in plan.vocal)
        if ph.cut is None and listener_silent and no_vocal and (lis, round(ph.end, 4)) not in nodded:
            quiet[lis].append(ph.end)
    measured = np.concatenate([report.nod_onsets(tracks[p].params[:, column_index("pitch")].astype(np.float64), quiet[p])
                               for p in "AB"])
    if len(measured) == 0:
        pytest.skip("every eligible phrase end got a nod in this simulation")
    assert np.isnan(measured).mean() >= 0.8


def test_reactions_show_up_in_the_reactor_params(sim):
    _, _, plan, tracks = sim
    for kind, col, level in (("smile_mirror", "smile", 0.15), ("brow_question", "brow_raise", 0.25), ("laugh_back", "laugh", 0.5)):
        hits = []
        for e in _events(plan, kind):
            x = tracks[e["person"]].params[:, column_index(col)]
            k = int(round((e["onset"] + min(0.35, 0.8 * e["duration"])) * FPS))
            hits.append(x[k] >= level and x[k] > x[max(0, int(e["onset"] * FPS) - 2)])
        assert np.mean(hits) >= 0.7, (kind, hits)


def test_listener_moves_less_than_speaker(sim):
    _, _, plan, tracks = sim
    exp_var, pose_var = {"speaker": [], "listener": []}, {"speaker": [], "listener": []}
    w = 2 * FPS
    for p, q in (("A", "B"), ("B", "A")):
        T = len(tracks[p].params)
        talk = {x: np.zeros(T, bool) for x in "AB"}
        for ph in plan.phrases:
            talk[ph.person][int(ph.start * FPS):int(ph.end * FPS)] = True
        norm = np.linalg.norm(tracks[p].params[:, EXPRESSION_SLICE], axis=1)
        for a in range(0, T - w, w):
            role = "speaker" if talk[p][a:a + w].mean() > 0.6 else "listener" if not talk[p][a:a + w].any() and talk[q][a:a + w].mean() > 0.6 else None
            if role:
                exp_var[role].append(norm[a:a + w].var())
                pose_var[role].append(tracks[p].params[a:a + w, POSE_SLICE].var(0).mean())
    assert len(exp_var["listener"]) >= 5 and len(exp_var["speaker"]) >= 5
    assert np.mean(exp_var["listener"]) < 0.7 * np.mean(exp_var["speaker"])
    assert np.mean(pose_var["listener"]) < 0.5 * np.mean(pose_var["speaker"])


def test_audio_is_16k_mono_with_speech_exactly_where_annotated(sim):
    *_, tracks = sim
    for p, tr in tracks.items():
        assert tr.audio.dtype == np.float32 and tr.audio.ndim == 1
        assert len(tr.audio) == len(tr.params) * SAMPLES_PER_FRAME == round(DURATION * SAMPLE_RATE)
        inside = np.zeros(len(tr.audio), bool)
        for a, b, _ in tr.segments:
            inside[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] = True
        rms_in = np.sqrt(np.mean(tr.audio[inside] ** 2))
        rms_out = np.sqrt(np.mean(tr.audio[~inside] ** 2))
        assert rms_in > 30 * rms_out, (p, rms_in, rms_out)  # > 30 dB apart
        assert inside.mean() > 0.2


def test_mouth_follows_the_audio_envelope(sim):
    _, _, _, tracks = sim
    for tr in tracks.values():
        env = speech.frame_rms(tr.audio, SAMPLES_PER_FRAME)[:len(tr.params)]
        r = np.corrcoef(tr.params[:, column_index("jaw_open")], env)[0, 1]
        assert r > 0.6, r


def test_simulation_is_deterministic_and_seed_dependent(sim):
    people, banks, _, tracks = sim
    again = realise(plan_conversation(people, banks, DURATION, np.random.default_rng(1)), people, np.random.default_rng(1))
    other = realise(plan_conversation(people, banks, DURATION, np.random.default_rng(2)), people, np.random.default_rng(2))
    for p in "AB":
        assert np.array_equal(again[p].params, tracks[p].params) and np.array_equal(again[p].audio, tracks[p].audio)
        assert not np.array_equal(other[p].params, tracks[p].params)


def test_reactions_are_one_to_many():
    """Same identities and the same speaker plan seed, different listener randomness: different reactions."""
    people = _people(3)
    banks = speech.build_banks(people.values(), "formant", seed=0)
    logs = [plan_conversation(people, banks, 60.0, np.random.default_rng(s)).events for s in (5, 6)]
    assert [(e["kind"], e["onset"]) for e in logs[0]] != [(e["kind"], e["onset"]) for e in logs[1]]


def test_formant_fallback_voice_speaks_and_asks():
    people = _people(4)
    u = speech.make_utterance("Do you like cooking?", "speech", people["A"].voice, "formant")
    assert u.audio.dtype == np.float32 and u.duration > 0.5 and u.voiced
    assert u.is_question
    with pytest.raises(ValueError, match="voice backend"):
        speech.resolve_backend("festival")


def test_readme_rule_table_matches_the_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "data_prep" / "README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines() if line.startswith("| `")}
    for kind, rule in REACTION_RULES.items():
        lo, hi = (round(1000 * x) for x in rule["latency"])
        assert kind in rows and f"{lo}-{hi} ms" in rows[kind], kind
        assert rule["prob"] in rows[kind], kind
