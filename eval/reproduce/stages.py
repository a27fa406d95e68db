"""The registry of reproduction stages (one notebook each), what each needs from upstream, and the
per-profile parameter overrides (profiles.yaml).

A stage's notebook may not exist yet: the scheduler then reports it as "not built yet" and carries on.
Upstream outputs reach a notebook as parameters named in `Stage.inputs`:
`Upstream("02_motion_autoencoder", path="motion_autoencoder.pt")` passes the path
`<run dir>/02_motion_autoencoder/motion_autoencoder.pt`; `Upstream("01_dataset_curation",
param="corpus_dir")` passes the value 01 ran with for its own `corpus_dir` (01 builds the corpus there,
outside its output folder, and reuses it). These names are the contract with the notebooks' authors:
change them here if a notebook writes elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILES_FILE = Path(__file__).with_name("profiles.yaml")
PROFILE_NAMES = ("smoke", "quick", "full", "paper")


@dataclass(frozen=True)
class Upstream:
    stage: str
    path: str = ""   # inside the upstream stage's output folder; "" = the folder itself
    param: str = ""  # instead: the value of this parameter in the upstream's run (from its run.json)

    def __str__(self) -> str:
        return f"{self.stage}:{self.param}" if self.param else f"{self.stage}/{self.path}"


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str                                   # relative to the repo root, or absolute
    depends: tuple[str, ...] = ()                   # run after these (stages named in `inputs` are added)
    inputs: dict[str, Upstream] = field(default_factory=dict)  # parameter -> upstream output
    exclusive: bool = False                         # runs alone (timings must not share the CPU)
    claims: tuple[str, ...] = ()                    # the paper's claims it tests (listed even if it did not run)
    tables: tuple[str, ...] = ()                    # eval.tables keys it fills

    @property
    def upstream(self) -> tuple[str, ...]:
        extra = [u.stage for u in self.inputs.values() if u.stage not in self.depends]
        return tuple(dict.fromkeys([*self.depends, *extra]))

    def notebook_path(self, repo: Path = REPO) -> Path:
        path = Path(self.notebook)
        return path if path.is_absolute() else repo / path


_CORPUS = Upstream("01_dataset_curation", param="corpus_dir")
_AUTOENCODER = Upstream("02_motion_autoencoder", "motion_autoencoder.pt")
_READOUT = Upstream("02_motion_autoencoder", "readout.pt")  # latent -> face-parameter extractor

STAGES: tuple[Stage, ...] = (
    Stage("01_dataset_curation", "notebooks/01_dataset_curation.ipynb"),
    Stage("02_motion_autoencoder", "notebooks/02_motion_autoencoder.ipynb", inputs={"corpus_dir": _CORPUS}),
    Stage("03_training_ablations", "notebooks/03_training_ablations.ipynb",
          inputs={"corpus_dir": _CORPUS, "autoencoder": _AUTOENCODER, "readout": _READOUT},
          claims=(("Giving the generator the user's motion m_u makes the avatar more reactive "
                   "(Table 5: rPCC-Exp 0.052 -> 0.042, rPCC-Pose 0.175 -> 0.146)"),
                  "Smaller motion blocks lower the latency, larger ones improve FVD (Table 7)",
                  "The look-ahead mask removes the blockwise causal mask's jitter (App. D.4, Fig. 12)",
                  "Diffusion forcing drifts less than AR diffusion on clean context (App. D.4, Fig. 11)",
                  "More reactive than INFP* at a fraction of its latency (Table 1)"),
          tables=("table1", "table5_6", "table7")),
    Stage("04_dpo", "notebooks/04_dpo.ipynb",
          inputs={"corpus_dir": _CORPUS, "autoencoder": _AUTOENCODER, "readout": _READOUT,
                  "checkpoint": Upstream("03_training_ablations", "checkpoint.pt"),
                  "talking_checkpoint": Upstream("03_training_ablations", "talking.pt"),
                  "no_user_checkpoint": Upstream("03_training_ablations", "no_user_motion.pt")},
          claims=(("DPO makes motion richer and more reactive (Tables 5/6: SID 2.236 -> 2.442, "
                   "Var 1.408 -> 1.734, rPCC-Exp 0.042 -> 0.003)"),),
          tables=("table5_6",)),
    # Timings do not depend on trained weights (same shapes, same compute); only cue-to-reaction needs 04's
    # model (and the corpus in its latent space: eval.latency_cue picks the oracle view when the model was
    # trained on it). 05 runs alone so that no other notebook shares the CPU while it times.
    Stage("05_latency", "notebooks/05_latency.ipynb", exclusive=True,
          inputs={"corpus_dir": _CORPUS, "checkpoint": Upstream("04_dpo", "checkpoint.pt")},
          claims=("Motion latency about 0.5 s against 3.4 s for INFP*, a 6.8x speed-up (Table 1)",),
          tables=("table1",)),
    Stage("06_preference_study", "notebooks/06_preference_study.ipynb",
          claims=("Raters prefer Avatar Forcing over INFP* on all five criteria, 80.3 % overall (Table 2)",)),
    # 07 times its blocks against the wall clock, so it runs alone like 05.
    Stage("07_live_demo", "notebooks/07_live_demo.ipynb", exclusive=True,
          inputs={"corpus_dir": _CORPUS, "autoencoder": _AUTOENCODER, "checkpoint": Upstream("04_dpo", "checkpoint.pt")},
          claims=("The avatar streams in real time, one 400 ms block per step",)),
)

# Paper results no stage can measure on this machine, with the reason (shown in every REPORT).
NOT_MEASURABLE_HERE = (
    {"claim": "Best image and video quality on HDTF talking heads (Table 3)",
     "why": "needs the HDTF videos and the FID/FVD/ArcFace/SyncNet extractors; the embedded corpus is synthetic"},
    {"claim": "Best user-avatar synchrony on ViCo listening heads (Table 4)",
     "why": "needs the ViCo dataset; the baselines' numbers are inherited from DIM and cannot be rerun"},
)


class RegistryError(ValueError):
    pass


def check_registry(stages) -> dict[str, Stage]:
    """Names unique, upstreams known, no cycles. Returns {name: stage} in a dependency order."""
    by_name = {}
    for stage in stages:
        if stage.name in by_name:
            raise RegistryError(f"stage {stage.name!r} is registered twice")
        by_name[stage.name] = stage
    for stage in stages:
        unknown = [u for u in stage.upstream if u not in by_name]
        if unknown:
            raise RegistryError(f"stage {stage.name!r} depends on unknown stages {unknown}")
    ordered, visiting = {}, set()

    def visit(name, path):
        if name in ordered:
            return
        if name in visiting:
            raise RegistryError(f"dependency cycle: {' -> '.join([*path, name])}")
        visiting.add(name)
        for up in by_name[name].upstream:
            visit(up, [*path, name])
        ordered[name] = by_name[name]

    for stage in stages:
        visit(stage.name, [])
    return ordered


def select(stages, patterns) -> list[str]:
    """Stage names matching each pattern exactly or by prefix ("03" -> "03_training_ablations")."""
    names = [s.name for s in stages]
    chosen = []
    for pattern in patterns:
        hits = [n for n in names if n == pattern] or [n for n in names if n.startswith(pattern)]
        if not hits:
            raise RegistryError(f"--only {pattern!r} matches no stage; stages: {', '.join(names)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def find_stage(stages, notebook: str | Path) -> Stage | None:
    """The registered stage whose notebook is this file (or whose name is this string), if any."""
    for stage in stages:
        if str(notebook) == stage.name:
            return stage
        try:
            if stage.notebook_path().resolve() == Path(notebook).resolve():
                return stage
        except OSError:
            continue
    return None


def load_profiles(path: str | Path = PROFILES_FILE) -> dict:
    """{profile: {"all": {...}, stage: {...}}}; every profile named in PROFILE_NAMES is present."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a mapping of profile -> overrides")
    for name, body in data.items():
        if not isinstance(body, dict) or not all(isinstance(v, dict) for v in body.values()):
            raise RegistryError(f"{path}: profile {name!r} must map 'all' or stage names to parameter mappings")
    return {name: data.get(name) or {} for name in dict.fromkeys([*PROFILE_NAMES, *data])}
