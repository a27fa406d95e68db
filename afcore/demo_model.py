"""The models behind the live demo: load a (motion autoencoder, generator, readout) bundle, or train the tiny
one from a corpus. The readout maps motion latents to the corpus' face parameters (smile, brows, pitch, ...),
so the demo can plot the avatar's expression and check that it smiles back.

The shipped bundles (`notebooks/assets/live_demo/`, `SHIPPED_BUNDLES`, float16) were made by
`afcore.demo_train.train_demo_models` with the recipe stored inside each (`state["recipe"]`).
The readout is the suite's ridge readout (`afcore.readout.ParamReadout`), fitted here on a bundle's own latents.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from data_prep.corpus import Corpus

from .config import ModelConfig, get_config
from .data import frames_to_images, latents_path
from .model import AvatarForcing, load_checkpoint
from .motion_ae import MotionAutoencoder
from .readout import ParamReadout
from .train_ae import ae_tag, load_autoencoder

ASSET_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "assets" / "live_demo"
# What ships (ASSET_DIR/README.md says how each was made and what it can do):
# "reactive": tiny-reactive generator on oracle latents, drawn by the corpus renderer: smiles back;
# "autoencoder": tiny-demo generator on a narrow motion autoencoder's latents (autoencoder.pt beside it):
#   talks and animates any face image, but does not react to the user's expression.
SHIPPED_BUNDLES = {"reactive": "reactive.pt", "autoencoder": "checkpoint.pt"}


# ------------------------------------------------------------------------------------------------ readout
def fit_readout(latents: np.ndarray, params: np.ndarray, columns, alpha: float = 0.1, held_out=None) -> ParamReadout:
    """The suite's ridge readout; `held_out` = (latents, params) to report R^2 per column on."""
    readout = ParamReadout.fit(latents, params, alpha=alpha, columns=columns)
    if held_out is not None:
        r2 = readout.r2(*held_out)["per_param"]
        readout.info["held_out_r2"] = {c: (None if np.isnan(v) else round(v, 3)) for c, v in r2.items()}
    return readout


@torch.no_grad()
def stream_latents(ae: MotionAutoencoder, corpus: Corpus, split: str, max_frames: int = 4000, batch: int = 100):
    """Motion latents and parameters of the streams of one split (at most max_frames frames in total)."""
    rows = corpus.manifest[corpus.manifest.split == split][["conversation_id", "person"]].drop_duplicates()
    per = max(1, max_frames // max(1, len(rows)))
    xs, ys = [], []
    for conv, person in rows.itertuples(index=False):
        s = corpus.stream(conv, person)
        pick = np.unique(np.linspace(0, len(s["frames"]) - 1, min(per, len(s["frames"]))).astype(int))  # whole stream
        for a in range(0, len(pick), batch):
            frames = np.asarray(s["frames"][pick[a:a + batch]])
            xs.append(ae.encode_motion(_to_size(frames_to_images(frames), ae.image_size)).numpy())
        ys.append(np.asarray(s["params"][pick]))
    return np.concatenate(xs), np.concatenate(ys)


def readout_for(ae: MotionAutoencoder, corpus_dir, max_frames: int = 4000) -> ParamReadout:
    """Fit a readout for this autoencoder on a corpus (train split; R^2 on the test split)."""
    corpus = Corpus(corpus_dir)
    train = stream_latents(ae, corpus, "train", max_frames)
    test = stream_latents(ae, corpus, "test", max_frames // 4)
    return fit_readout(*train, corpus.columns, held_out=test)


def _to_size(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------------ bundle
@dataclass
class DemoModels:
    """ae = None: an "oracle" generator, trained on a fixed linear embedding of the true face parameters
    (afcore.data.oracle_latent_corpus, the control of notebooks 03/04). Then `embedding` maps parameters to
    latents (the user's face is embedded, not encoded) and the avatar is drawn by the corpus renderer from
    `readout(latents)`, the exact inverse: no autoencoder is involved."""
    ae: MotionAutoencoder | None
    model: AvatarForcing
    readout: ParamReadout
    info: dict = field(default_factory=dict)
    embedding: ParamReadout | None = None

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg

    @property
    def oracle(self) -> bool:
        return self.ae is None


def oracle_maps(latent_corpus, max_frames: int = 20000) -> tuple[ParamReadout, ParamReadout]:
    """(readout latents -> params, embedding params -> latents) of an oracle latent space, recovered from the
    (params, latents) pairs of its corpus view: both maps are linear, so least squares recovers them exactly
    (frames spread over every training stream, so that rare parameters such as laugh are covered)."""
    corpus = Corpus(latent_corpus)
    rows = corpus.manifest[corpus.manifest.split == "train"][["conversation_id", "person"]].drop_duplicates()
    per, lat, par = max(1, max_frames // max(1, len(rows))), [], []
    for c, p in rows.itertuples(index=False):
        m = np.load(latents_path(latent_corpus, c, p), mmap_mode="r")
        pick = np.unique(np.linspace(0, len(m) - 1, min(per, len(m))).astype(int))
        lat.append(np.asarray(m[pick]))
        par.append(np.asarray(corpus.stream(c, p)["params"][pick]))
    lat, par = np.concatenate(lat), np.concatenate(par)
    readout = fit_readout(lat, par, corpus.columns, alpha=1e-9)
    embedding = fit_readout(par, lat, [f"m{i}" for i in range(lat.shape[1])], alpha=1e-9)
    err = float(np.abs(readout(embedding(par)) - par).max())
    readout.info.update(held_out_r2={c: 1.0 for c in corpus.columns}, roundtrip_max_error=err)  # exact inverse
    return readout, embedding


def load_demo_models(checkpoint: str | os.PathLike = "", autoencoder: str | os.PathLike = "",
                     corpus_dir: str | os.PathLike | None = None, latent_corpus: str | os.PathLike | None = None,
                     bundle: str = "reactive") -> DemoModels:
    """Empty paths: a shipped bundle (`SHIPPED_BUNDLES`). A checkpoint without a stored readout (e.g. from 04_dpo)
    gets one fitted on `corpus_dir`; an oracle-latent one (see DemoModels) needs no autoencoder, and its maps are
    stored in it or recovered from `latent_corpus`."""
    if not checkpoint:
        if bundle not in SHIPPED_BUNDLES:
            raise ValueError(f"bundle must be one of {sorted(SHIPPED_BUNDLES)}, got {bundle!r}")
        checkpoint = ASSET_DIR / SHIPPED_BUNDLES[bundle]
    ckpt = Path(checkpoint)
    ae_path = Path(autoencoder) if autoencoder else (ckpt.with_name("autoencoder.pt"))
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no generator checkpoint here (run stage 04 first); or use the shipped tiny "
                                "bundle with empty paths, e.g. `afsuite run 07 -p checkpoint '' -p autoencoder ''`")
    model, state = load_checkpoint(ckpt)
    space = str(state.get("latent_space") or state.get("ae_tag") or "")
    if space.startswith("oracle") or state.get("latents") == "oracle":
        if "embedding" in state:
            readout, embedding = ParamReadout.from_state(state["readout"]), ParamReadout.from_state(state["embedding"])
        elif latent_corpus:
            readout, embedding = oracle_maps(latent_corpus)
        else:
            raise ValueError(f"{ckpt} was trained on oracle latents ({space}); pass latent_corpus = the corpus view "
                             "they came from (afcore.data.oracle_latent_corpus, as notebooks 03/04 build it)")
        return DemoModels(None, model, readout, {"checkpoint": str(ckpt), "config": model.cfg.name, "latents": space,
                                                 "recipe": state.get("recipe"), "readout_r2": "exact (oracle)"},
                          embedding)
    if not ae_path.is_file():
        raise FileNotFoundError(f"{ae_path}: no motion autoencoder for {ckpt}; pass autoencoder=... (stage 02 writes "
                                "motion_autoencoder.pt) or leave both empty for the shipped tiny bundle")
    ae, _ = load_autoencoder(ae_path)
    if ae.latent_dim != model.cfg.latent_dim:
        raise ValueError(f"{ae_path} has latent_dim {ae.latent_dim} but {ckpt} expects {model.cfg.latent_dim}: "
                         "use the autoencoder the generator's latents were encoded with")
    tag = ae_tag(ae)
    if space not in ("", tag):
        raise ValueError(f"{ckpt} was trained on latents of autoencoder {space}, not {ae_path} ({tag}): pass the "
                         "autoencoder its training latents were encoded with")
    if "readout" in state and state["readout"]["weight"].shape[0] == ae.latent_dim:
        readout = ParamReadout.from_state(state["readout"])
    elif corpus_dir:
        readout = readout_for(ae, corpus_dir)
    else:
        raise ValueError(f"{ckpt} carries no readout; pass corpus_dir so that one can be fitted")
    info = {"checkpoint": str(ckpt), "autoencoder": str(ae_path), "config": model.cfg.name, "ae_tag": tag,
            "recipe": state.get("recipe"), "readout_r2": readout.info.get("held_out_r2")}
    return DemoModels(ae, model, readout, info)


def load_official_demo_models(official_dir, corpus_dir) -> DemoModels:
    """The released model (paper config, 512 px, wav2vec2 audio) from a folder holding flow_transformer.pth,
    motion_autoencoder.pth and wav2vec2-base-960h/ (nothing is downloaded). Slower than real time on a CPU."""
    from .official import load_official_release
    d = Path(official_dir)
    need = {"flow_transformer.pth": d / "flow_transformer.pth", "motion_autoencoder.pth": d / "motion_autoencoder.pth",
            "wav2vec2-base-960h/": d / "wav2vec2-base-960h"}
    missing = [name for name, p in need.items() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{d}: missing {missing}; put the official release files there (see the official "
                                "repo's download_weights.sh), or leave official_dir empty for the tiny bundle")
    model, ae = load_official_release(need["flow_transformer.pth"], need["wav2vec2-base-960h/"],
                                      need["motion_autoencoder.pth"])
    readout = readout_for(ae, corpus_dir, max_frames=800)  # few frames: at 512 px every encode is slow
    return DemoModels(ae, model, readout, {"checkpoint": str(d), "config": model.cfg.name, "ae_tag": ae_tag(ae),
                                           "readout_r2": readout.info.get("held_out_r2"), "official": True})


def ensure_corpus(corpus_dir, hours: float = 0.012, seed: int = 3) -> Path:
    """The corpus the demo's user and avatar come from; a missing one is built small (three conversations,
    about 20-60 s on 2 cores), so that the demo starts on a fresh checkout."""
    path = Path(corpus_dir)
    if not (path / "corpus.json").exists():
        from data_prep.synth.build import SynthConfig, build_corpus
        print(f"{path}: no corpus here; building a small synthetic one ({hours} h, seed {seed})")
        build_corpus(path, SynthConfig(hours=hours, seed=seed, size=64, workers=2, mp4=False), progress=False)
    return path


def demo_config(**overrides) -> ModelConfig:
    """The shipped bundle's size: a narrow autoencoder and a 2-layer, 64-wide generator (fits in < 2 MB)."""
    return replace(get_config("tiny"), **{"name": "tiny-demo", "ae_width": 0.0625, "depth": 2, "hidden": 64, **overrides})
