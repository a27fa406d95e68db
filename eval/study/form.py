"""The rating form (ipywidgets; JupyterLab and Voila): a practice pair, then every trial of the rater's
counterbalanced schedule with the five criteria as Left / Tie / Right buttons.

Each answer is written at once (atomically, under a file lock) to the votes CSV; a started rater
resumes at their first unfinished trial; a second answer to the same item is refused. The class has
plain methods (`start`, `vote`, `next`) that the buttons call, so it can be driven without a browser:

    form = RatingForm("study/study.json", "study/votes.csv")
    form.widget                      # show it in a notebook cell
    form.start("rater07"); form.vote("Overall", "left"); form.next()
"""
from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import ipywidgets as W

from eval.study.build import load_manifest
from eval.study.design import CHOICES, StudyError, check_id, rater_schedule
from eval.study.votes import append_vote, read_votes

LABELS = {"left": "◀ Left", "tie": "Tie", "right": "Right ▶"}


def trial_key(set_id: str, a: str, b: str) -> tuple:
    return set_id, tuple(sorted((a, b)))


class RatingForm:
    def __init__(self, manifest, votes_path, rater_id: str | None = None):
        self.manifest = manifest if isinstance(manifest, dict) else load_manifest(manifest)
        self.root = Path(self.manifest.get("root", "."))
        self.votes_path = Path(votes_path)
        self.criteria = [c["name"] for c in self.manifest["criteria"]]
        self.rater_id, self.schedule, self.stage, self.index = None, [], "login", 0
        self.recorded: dict[tuple, dict[str, str]] = {}  # trial key -> criterion -> winner system or "tie"
        self.practice_answers: dict[str, str] = {}
        self._build_widgets()
        if rater_id:
            self.start(rater_id)

    # --- widgets -------------------------------------------------------------------------------
    def _build_widgets(self):
        self.rater_text = W.Text(placeholder="your rater id (e.g. r07)", description="Rater:")
        self.start_button = W.Button(description="Start", button_style="primary")
        self.start_button.on_click(lambda _: self._guard(self.start, self.rater_text.value))
        self.title = W.HTML()
        self.video_box = W.Box()
        self.note = W.HTML()
        self.buttons = {c: {ch: W.Button(description=LABELS[ch], layout=W.Layout(width="110px")) for ch in CHOICES}
                        for c in self.criteria}
        rows = []
        for c, question in ((c["name"], c["question"]) for c in self.manifest["criteria"]):
            for ch, button in self.buttons[c].items():
                button.on_click(lambda _, c=c, ch=ch: self._guard(self.vote, c, ch))
            rows.append(W.HBox([W.HTML(f"<b>{html.escape(c)}</b>: {html.escape(question)}",
                                       layout=W.Layout(width="520px")), *self.buttons[c].values()]))
        self.questions = W.VBox(rows)
        self.next_button = W.Button(description="Next ▶", button_style="info")
        self.next_button.on_click(lambda _: self._guard(self.next))
        self.message = W.HTML()
        self.widget = W.VBox([W.HBox([self.rater_text, self.start_button]), self.title, self.video_box, self.note,
                              self.questions, self.next_button, self.message])
        self._refresh()

    def _guard(self, action, *args):
        """Button handlers: show a refused action in the form instead of raising into the console."""
        try:
            action(*args)
        except StudyError as err:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"

    # --- state -----------------------------------------------------------------------------------
    @property
    def current(self) -> dict | None:
        """The trial on screen (set_id, left, right, video path), the practice pair, or None."""
        if self.stage == "practice":
            p = self.manifest["practice"]
            return {"set_id": p["set_id"], "left": p["systems"][0], "right": p["systems"][1],
                    "video": str(self.root / p["video"]), "practice": True}
        if self.stage == "study":
            t = self.schedule[self.index]
            return {"set_id": t["set_id"], "left": t["left"], "right": t["right"],
                    "video": str(self.root / t["videos"][t["left"]]), "practice": False}
        return None

    def answers(self) -> dict[str, str]:
        """This trial's answers as left / tie / right (as shown now)."""
        t = self.current
        if t is None:
            return {}
        if t["practice"]:
            return dict(self.practice_answers)
        side = {t["left"]: "left", t["right"]: "right", "tie": "tie"}
        return {c: side[w] for c, w in self.recorded.get(trial_key(t["set_id"], t["left"], t["right"]), {}).items()}

    def _complete(self, trial) -> bool:
        return len(self.recorded.get(trial_key(trial["set_id"], *trial["systems"]), {})) == len(self.criteria)

    def _first_open(self, start: int = 0) -> int | None:
        return next((i for i in range(start, len(self.schedule)) if not self._complete(self.schedule[i])), None)

    @property
    def progress(self) -> tuple[int, int]:
        return sum(map(self._complete, self.schedule)), len(self.schedule)

    # --- actions ---------------------------------------------------------------------------------
    def start(self, rater_id: str):
        """Log a rater in: their schedule, their recorded answers, and the first unfinished trial."""
        self.rater_id = check_id(rater_id)
        self.schedule = rater_schedule(self.manifest["trials"], self.rater_id, self.manifest.get("seed", 0))
        self.recorded = {}
        if self.votes_path.is_file():
            for row in read_votes(self.votes_path).to_dict("records"):
                if row["rater_id"] == self.rater_id:
                    winner = {"left": row["left_system"], "right": row["right_system"]}.get(row["choice"], "tie")
                    key = trial_key(row["set_id"], row["left_system"], row["right_system"])
                    self.recorded.setdefault(key, {})[row["criterion"]] = winner
        self.practice_answers = {}
        self.rater_text.value, self.rater_text.disabled, self.start_button.disabled = self.rater_id, True, True
        first = self._first_open()
        if self.manifest.get("practice") and not self.recorded:
            self.stage = "practice"
        elif first is None:
            self.stage = "finished"
        else:
            self.stage, self.index = "study", first
        self._show(message="Welcome back: resuming where you left off." if self.recorded else "")

    def vote(self, criterion: str, choice: str):
        """Record one answer at once; refuse a second answer to the same item."""
        if self.stage not in ("practice", "study"):
            raise StudyError("nothing to vote on: start with a rater id" if self.stage == "login"
                             else "the study is finished; thank you")
        if criterion not in self.criteria or choice not in CHOICES:
            raise StudyError(f"unknown answer {criterion!r} = {choice!r}; criteria are {self.criteria}, "
                             f"choices {list(CHOICES)}")
        t = self.current
        if criterion in self.answers():
            raise StudyError(f"{criterion!r} is already answered for this pair; answers cannot be changed")
        if t["practice"]:
            self.practice_answers[criterion] = choice
        else:
            append_vote(self.votes_path, {
                "rater_id": self.rater_id, "set_id": t["set_id"], "criterion": criterion,
                "left_system": t["left"], "right_system": t["right"], "choice": choice,
                "time": datetime.now(UTC).isoformat(timespec="seconds")})
            winner = {"left": t["left"], "right": t["right"]}.get(choice, "tie")
            self.recorded.setdefault(trial_key(t["set_id"], t["left"], t["right"]), {})[criterion] = winner
        self._refresh(f"Saved: {criterion} = {choice}." if not t["practice"] else "Practice answer (not saved).")

    def next(self) -> bool:
        """Go to the next unfinished trial once every criterion of this one is answered."""
        if self.stage == "practice":
            first = self._first_open()
            self.stage, self.index = ("study", first) if first is not None else ("finished", 0)
            self._show()
            return True
        if self.stage != "study":
            raise StudyError("nothing to move on to" if self.stage == "finished" else "start with a rater id first")
        if missing := [c for c in self.criteria if c not in self.answers()]:
            self._refresh(f"Please answer {', '.join(missing)} first.")
            return False
        following = self._first_open(self.index + 1)
        following = self._first_open() if following is None else following
        self.stage, self.index = ("study", following) if following is not None else ("finished", self.index)
        self._show()
        return True

    # --- display ---------------------------------------------------------------------------------
    def _show(self, message: str = ""):
        t = self.current
        if t is None:
            self.video_box.children = ()
        else:
            self.video_box.children = (W.Video.from_file(t["video"], autoplay=False, loop=False, controls=True,
                                                         layout=W.Layout(max_width="720px")),)
        self._refresh(message)

    def _refresh(self, message: str = ""):
        done, total = self.progress
        t = self.current
        if self.stage == "login":
            self.title.value = "<h3>Avatar preference study</h3>Enter your rater id and press Start."
        elif self.stage == "practice":
            self.title.value = "<h3>Practice pair (answers are not recorded)</h3>"
        elif self.stage == "study":
            self.title.value = f"<h3>Pair {done + 1} of {total}</h3>Watch the video, then answer every question."
        else:
            self.title.value = f"<h3>Finished: all {total} pairs are rated. Thank you!</h3>"
        practice_note = self.manifest.get("practice", {}).get("note", "") if self.stage == "practice" else ""
        self.note.value = f"<i>Reference answer: {html.escape(practice_note)}</i>" if practice_note else ""
        answers = self.answers()
        for c, row in self.buttons.items():
            for ch, button in row.items():
                button.disabled = t is None or c in answers
                button.button_style = "success" if answers.get(c) == ch else ""
        self.questions.layout.display = "none" if t is None else None
        self.next_button.disabled = t is None
        self.next_button.description = "Begin the study ▶" if self.stage == "practice" else "Next ▶"
        self.message.value = html.escape(message)
