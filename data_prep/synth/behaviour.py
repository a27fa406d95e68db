"""Conversation simulator: who speaks when, and how the other person reacts (the rule table below).

`plan_conversation` decides the timeline (phrases, pauses, overlaps, interruptions, laughs, smiles) and
the listener's reactions with their latencies; `data_prep.synth.motion` turns that plan into audio and
per-frame parameters. Both persons are simulated symmetrically: either can later play user or avatar.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_prep.synth.identity import Identity
from data_prep.synth.speech import Utterance, synth_laugh

# Reaction rules. Latency = reaction onset - trigger time; each person's mean latency is drawn inside the
# range (identity.Style) and every reaction adds jitter, clipped to the range. Probabilities are per person.
REACTION_RULES = {
    "nod": dict(trigger="partner phrase end", latency=(0.2, 0.6), prob="p_nod",
                effect="pitch dips 0.05-0.14 rad and returns, 1-2 cycles at 2.2-2.8 Hz"),
    "backchannel": dict(trigger="partner phrase end", latency=(0.2, 0.6), prob="p_backchannel",
                        effect='"mm-hmm"/"yeah"/... 6 dB quieter than speech, always with a nod at the same onset'),
    "smile_mirror": dict(trigger="partner smile onset", latency=(0.3, 0.8), prob="p_smile_mirror",
                         effect="smile for 60-100 % of the partner's smile duration"),
    "laugh_back": dict(trigger="partner laugh onset", latency=(0.2, 0.7), prob="p_laugh_back",
                       effect="shorter, softer laugh in audio and face (laugh, smile, squint, head back)"),
    "brow_question": dict(trigger="partner question end", latency=(0.15, 0.5), prob="p_brow_question",
                          effect="brow raise 0.5-0.9 for 0.5-1.0 s"),
}
TRANSITIONS = {"gap": 0.6, "overlap": 0.25, "interruption": 0.15}  # turn-change probabilities


@dataclass
class Phrase:
    person: str
    start: float
    utt: Utterance
    turn: int
    cut: float | None = None  # absolute time the phrase is cut off (interruption / corpus end)

    @property
    def end(self) -> float:
        return self.cut if self.cut is not None else self.start + self.utt.duration


@dataclass
class Plan:
    duration: float
    phrases: list = field(default_factory=list)  # [Phrase]
    vocal: list = field(default_factory=list)  # [(person, start, kind, audio)] backchannels and laughs
    episodes: list = field(default_factory=list)  # [dict(person, kind, onset, duration, amplitude, ...)]
    events: list = field(default_factory=list)  # reaction log -> events.parquet


def _other(p: str) -> str:
    return "B" if p == "A" else "A"


def _jitter_latency(rng, mean, lo_hi, sd=0.06):
    return float(np.clip(mean + rng.normal(0, sd), *lo_hi))


class _Busy:
    """Vocal intervals per person, to keep reactions out of the reactor's own speech."""

    def __init__(self):
        self.spans = {"A": [], "B": []}

    def add(self, person, a, b):
        self.spans[person].append((a, b))

    def free(self, person, a, b) -> bool:
        return all(e <= a or s >= b for s, e in self.spans[person])


def _smiling(episodes, person, a, b) -> bool:
    return any(e["person"] == person and e["kind"] in ("smile", "laugh") and e["onset"] < b
               and e["onset"] + e["duration"] + 0.4 > a for e in episodes)


def plan_conversation(people: dict[str, Identity], banks: dict, duration: float, rng: np.random.Generator) -> Plan:
    """people: {"A": Identity, "B": Identity}; banks: identity_id -> {"speech": [...], "backchannel": [...]}."""
    plan, busy = Plan(duration), _Busy()
    style = {p: people[p].style for p in people}
    speaker, t, turn, recent = str(rng.choice(["A", "B"])), float(rng.uniform(0.3, 0.8)), 0, {"A": [], "B": []}
    while t < duration - 1.0:
        bank = banks[people[speaker].identity_id]["speech"]
        n_phrases = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
        for i in range(n_phrases):
            want_q = i == n_phrases - 1 and rng.random() < 0.35
            pool = [u for u in bank if u.is_question == want_q and u.text not in recent[speaker][-10:]] or bank
            utt = pool[int(rng.integers(len(pool)))]
            recent[speaker].append(utt.text)
            ph = Phrase(speaker, t, utt, turn)
            plan.phrases.append(ph)
            t = ph.end
            if rng.random() < style[speaker].smile_rate:  # a smile while talking
                plan.episodes.append(dict(person=speaker, kind="smile", onset=ph.start + rng.uniform(0, 0.6) * utt.duration,
                                          duration=rng.uniform(1.0, 3.0), spontaneous=True,
                                          amplitude=rng.uniform(0.5, 1.0) * (0.5 + 0.5 * style[speaker].expressiveness)))
            if rng.random() < style[speaker].laugh_rate and t < duration - 1.5:  # laughing at one's own story
                t += rng.uniform(0.0, 0.2)
                audio = synth_laugh(people[speaker].voice, rng, intensity=0.6 + 0.6 * style[speaker].expressiveness)
                plan.vocal.append((speaker, t, "laugh", audio))
                plan.episodes.append(dict(person=speaker, kind="laugh", onset=t, duration=len(audio) / 16000,
                                          amplitude=1.0, spontaneous=True))
                t += len(audio) / 16000
            if i < n_phrases - 1:
                t += rng.uniform(0.15, 0.5)
        last = plan.phrases[-1]
        kind = str(rng.choice(list(TRANSITIONS), p=list(TRANSITIONS.values())))
        if kind == "gap" or last.end < t - 0.05:  # after a laugh the partner simply waits
            t = t + rng.uniform(0.2, 0.9)
        elif kind == "overlap":
            t = max(last.start + 0.3, t - rng.uniform(0.1, 0.5))
        else:  # interruption: the partner cuts in, the speaker stops 0.2-0.4 s later
            t = last.start + rng.uniform(0.4, 0.75) * last.utt.duration
            last.cut = t + rng.uniform(0.2, 0.4)
            plan.episodes.append(dict(person=last.person, kind="interrupted", onset=t, duration=last.cut - t,
                                      amplitude=0.0, spontaneous=True))
        speaker, turn = _other(speaker), turn + 1
    for ph in plan.phrases:  # nothing runs past the end of the recording
        if ph.end > duration - 0.05:
            ph.cut = max(ph.start + 0.05, duration - 0.05)
        busy.add(ph.person, ph.start, ph.end)
    plan.phrases = [ph for ph in plan.phrases if ph.start < duration - 0.3]
    for person, start, kind, audio in plan.vocal:
        busy.add(person, start, start + len(audio) / 16000)
    _plan_reactions(plan, people, banks, busy, rng)
    return plan


def _plan_reactions(plan: Plan, people, banks, busy: _Busy, rng):
    style = {p: people[p].style for p in people}
    log = plan.events

    def record(reactor, kind, trigger_kind, trigger_time, onset, dur, amp):
        log.append(dict(person=reactor, identity=people[reactor].identity_id, kind=kind,
                        trigger_person=_other(reactor), trigger_kind=trigger_kind, trigger_time=round(trigger_time, 4),
                        onset=round(onset, 4), latency=round(onset - trigger_time, 4), duration=round(dur, 4),
                        amplitude=round(amp, 4)))

    # --- phrase ends -> nods, backchannels; question ends -> brow raises
    for ph in plan.phrases:
        if ph.cut is not None:  # interrupted phrases get no listener reaction
            continue
        lis, s, end = _other(ph.person), style[_other(ph.person)], ph.end
        if end > plan.duration - 1.0:
            continue
        if ph.utt.is_question and rng.random() < s.p_brow_question:  # even if the answer follows at once
            lat_b = _jitter_latency(rng, s.brow_latency, REACTION_RULES["brow_question"]["latency"], 0.05)
            if busy.free(lis, end - 0.2, end + lat_b):
                dur, amp = rng.uniform(0.5, 1.0), rng.uniform(0.5, 0.9) * (0.6 + 0.4 * s.expressiveness)
                plan.episodes.append(dict(person=lis, kind="brow", onset=end + lat_b, duration=dur, amplitude=amp,
                                          spontaneous=False))
                record(lis, "brow_question", "question_end", end, end + lat_b, dur, amp)
        lat = _jitter_latency(rng, s.nod_latency, REACTION_RULES["nod"]["latency"])
        if not busy.free(lis, end - 0.2, end + lat + 0.3):  # nodding may run into one's own first words
            continue
        bank = banks[people[lis].identity_id]["backchannel"]
        if rng.random() < s.p_backchannel and busy.free(lis, end, end + lat + 0.8):
            utt = bank[int(rng.integers(len(bank)))]
            plan.vocal.append((lis, end + lat, "backchannel", utt))
            busy.add(lis, end + lat, end + lat + utt.duration)
            record(lis, "backchannel", "phrase_end", end, end + lat, utt.duration, 1.0)
            nod = True
        else:
            nod = rng.random() < s.p_nod
        if nod:
            cycles, freq = int(rng.choice([1, 2], p=[0.6, 0.4])), rng.uniform(2.2, 2.8)
            amp = float(np.clip(rng.uniform(0.05, 0.1) * s.head_energy, 0.05, 0.14))
            plan.episodes.append(dict(person=lis, kind="nod", onset=end + lat, duration=cycles / freq, amplitude=amp,
                                      freq=freq, spontaneous=False))
            record(lis, "nod", "phrase_end", end, end + lat, cycles / freq, amp)
    # --- spontaneous listener smiles, then mirroring of every spontaneous smile
    for p in ("A", "B"):
        for t0 in np.cumsum(rng.exponential(25.0, 8)):
            if t0 < plan.duration - 2:
                plan.episodes.append(dict(person=p, kind="smile", onset=float(t0), duration=rng.uniform(1.0, 2.5),
                                          amplitude=rng.uniform(0.4, 0.8) * (0.5 + 0.5 * style[p].expressiveness),
                                          spontaneous=True))
    for ep in [e for e in plan.episodes if e["kind"] in ("smile", "laugh") and e["spontaneous"]]:
        rea, s = _other(ep["person"]), style[_other(ep["person"])]
        if ep["kind"] == "smile" and rng.random() < s.p_smile_mirror:
            lat = _jitter_latency(rng, s.smile_latency, REACTION_RULES["smile_mirror"]["latency"], 0.07)
            if _smiling(plan.episodes, rea, ep["onset"] - 0.5, ep["onset"] + lat + 0.3):
                continue  # already smiling: nothing to mirror
            dur, amp = ep["duration"] * rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.7) * (0.5 + 0.5 * s.expressiveness)
            if ep["onset"] + lat < plan.duration - 0.5:
                plan.episodes.append(dict(person=rea, kind="smile", onset=ep["onset"] + lat, duration=dur, amplitude=amp,
                                          spontaneous=False))
                record(rea, "smile_mirror", "smile_onset", ep["onset"], ep["onset"] + lat, dur, amp)
        if ep["kind"] == "laugh" and rng.random() < s.p_laugh_back:
            lat = _jitter_latency(rng, s.laugh_latency, REACTION_RULES["laugh_back"]["latency"])
            audio = synth_laugh(people[rea].voice, rng, intensity=0.5 + 0.4 * s.expressiveness)
            on, dur = ep["onset"] + lat, len(audio) / 16000
            if on + dur < plan.duration - 0.2 and busy.free(rea, on - 0.1, on + dur):
                plan.vocal.append((rea, on, "laugh", audio))
                busy.add(rea, on, on + dur)
                plan.episodes.append(dict(person=rea, kind="laugh", onset=on, duration=dur, amplitude=0.8,
                                          spontaneous=False))
                record(rea, "laugh_back", "laugh_onset", ep["onset"], on, dur, 0.8)
    # --- gaze: speakers look away at turn starts (and now and then); listeners look at the speaker
    turn_starts = {}
    for ph in plan.phrases:
        turn_starts.setdefault(ph.turn, ph)
    for ph in turn_starts.values():
        if rng.random() < 0.6:
            plan.episodes.append(dict(person=ph.person, kind="gaze_away", onset=ph.start + rng.uniform(0, 0.3),
                                      duration=rng.uniform(0.5, 1.5), amplitude=1.0, spontaneous=True,
                                      target=(float(rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)), float(rng.uniform(-0.3, 0.5)))))
    for p in ("A", "B"):
        for t0 in np.cumsum(rng.exponential(6.0, int(plan.duration / 3) + 2)):
            if t0 < plan.duration - 1:
                glance = busy.free(p, t0, t0 + 0.1)  # listeners glance away rarely, speakers more often
                if rng.random() < (0.2 if glance else 0.5):
                    plan.episodes.append(dict(person=p, kind="gaze_away", onset=float(t0), duration=rng.uniform(0.3, 0.9),
                                              amplitude=1.0, spontaneous=True,
                                              target=(float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.4, 0.4)))))
    log.sort(key=lambda e: (e["onset"], e["person"]))
