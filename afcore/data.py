"""What training reads from a corpus folder (synthetic or ingested; see data_prep/): frame pairs for the
motion autoencoder (stage 0), the motion latents of every stream encoded once, and 50-frame windows for
diffusion forcing and DPO (stages 1-2). Arrays are memory-mapped; nothing is reloaded per step."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from data_prep.corpus import Corpus

from .config import ModelConfig
from .io import atomic_path, write_json

LATENT_DIR = "latents"


def frames_to_images(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1], the autoencoder's input range."""
    x = torch.from_numpy(np.array(frames)).float().div(127.5).sub(1.0)  # a copy: memmaps are read-only
    return x.movedim(-1, -3)


def images_to_frames(images: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3), clamped (the decoder has no tanh)."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1).numpy()


def _split_rows(corpus: Corpus, split: str | None):
    rows = corpus.manifest if split is None else corpus.manifest[corpus.manifest.split == split]
    if rows.empty:
        raise ValueError(f"{corpus.root}: no clips in split {split!r} (splits: {sorted(corpus.manifest.split.unique())})")
    return rows.reset_index(drop=True)


class FramePairs(Dataset):
    """Two frames of one clip of one person: the source gives identity, the driving frame the motion to
    reconstruct (paper App. B.1). Item i is a fixed pair for a given seed, so runs are repeatable."""

    def __init__(self, corpus_dir, split: str | None = "train", pairs_per_clip: int = 64, seed: int = 0):
        self.corpus = Corpus(corpus_dir)
        self.rows = _split_rows(self.corpus, split)
        self.pairs_per_clip, self.seed = pairs_per_clip, seed

    def __len__(self):
        return len(self.rows) * self.pairs_per_clip

    def __getitem__(self, i):
        row = self.rows.iloc[i % len(self.rows)]
        rng = np.random.default_rng((self.seed, i))
        a, b = row.start_frame + rng.integers(0, row.n_frames, size=2)
        frames = self.corpus.stream(row.conversation_id, row.person)["frames"]
        return {"source": frames_to_images(frames[a]), "driving": frames_to_images(frames[b])}


def corpus_view(corpus_dir, view) -> Path:
    """A folder of links to every part of a corpus except its `latents/`, plus an empty `latents/` of its own:
    latents of another space (a new autoencoder, the oracle embedding) never replace the corpus' own."""
    src, view = Path(corpus_dir).resolve(), Path(view)
    view.mkdir(parents=True, exist_ok=True)
    for part in src.iterdir():
        link = view / part.name
        if part.name != LATENT_DIR and not link.is_symlink() and not link.exists():
            link.symlink_to(part)
    (view / LATENT_DIR).mkdir(exist_ok=True)
    return view


def latents_path(corpus_dir, conversation_id: str, person: str) -> Path:
    return Path(corpus_dir) / LATENT_DIR / f"{conversation_id}_{person}.npy"


@torch.no_grad()
def encode_corpus_latents(corpus_dir, autoencoder, ae_tag: str, batch: int = 256, progress: bool = True) -> Path:
    """Encode every (conversation, person) stream's frames to motion latents m = Q.lambda (T, D) float32.
    Resumable: streams already encoded with the same autoencoder (`ae_tag`) are skipped."""
    corpus = Corpus(corpus_dir)
    out = Path(corpus_dir) / LATENT_DIR
    meta_path = out / "meta.json"
    meta = {"ae_tag": ae_tag, "latent_dim": autoencoder.latent_dim}
    if meta_path.exists() and json.loads(meta_path.read_text()).get("ae_tag") != ae_tag:
        for f in out.glob("*.npy"):  # latents of another autoencoder would silently mix: start over
            f.unlink()
    write_json(meta_path, meta)
    streams = corpus.manifest[["conversation_id", "person"]].drop_duplicates().itertuples(index=False)
    autoencoder.eval()
    for conv, person in tqdm(list(streams), desc="encode latents", disable=not progress, unit="stream"):
        path = latents_path(corpus_dir, conv, person)
        if path.exists():
            continue
        frames = corpus.stream(conv, person)["frames"]
        latents = [autoencoder.encode_motion(frames_to_images(frames[i:i + batch])) for i in range(0, len(frames), batch)]
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, torch.cat(latents).numpy().astype(np.float32))
    return out


# Oracle stage 0. Its latents get unit variance per dimension (the usual latent normalisation for diffusion):
# on the quick corpus, ours at 300 steps reached FD-Exp 0.06 with it against 1.0 with per-dim std 0.12.
def oracle_latent_corpus(corpus_dir, latent_dim: int, seed: int = 0) -> Path:
    """A view of the corpus (symlinks, beside it: `<corpus>_oracle_latents`) whose motion latents are a fixed
    linear embedding of the TRUE face parameters, m = sqrt(D / 10) ((p - mu) / sd) Q^T with a random orthonormal
    Q (D x 10) and mu, sd of the train split (unit variance per latent dimension). A control that bypasses
    stage 0: it isolates the generator's claims (user motion, masks, blocks, DPO) from the quality of a
    CPU-budget autoencoder, and the ridge readout inverts it exactly. Deterministic in (corpus, latent_dim,
    seed), so notebooks 03 and 04 and the live demo's reactive bundle build the same view."""
    src = Path(corpus_dir).resolve()
    view = corpus_view(src, src.with_name(f"{src.name}_oracle_latents"))
    corpus = Corpus(src)
    streams = corpus.manifest[["conversation_id", "person", "split"]].drop_duplicates()
    train = np.concatenate([np.asarray(corpus.stream(r.conversation_id, r.person)["params"], np.float64)
                            for r in streams[streams.split == "train"].itertuples()])
    mu, sd = train.mean(0), train.std(0) + 1e-3
    Q = np.linalg.qr(np.random.default_rng([seed, latent_dim]).normal(size=(latent_dim, train.shape[1])))[0]
    for r in streams.itertuples():
        params = np.asarray(corpus.stream(r.conversation_id, r.person)["params"], np.float64)
        scale = np.sqrt(latent_dim / train.shape[1])
        np.save(latents_path(view, r.conversation_id, r.person), (scale * ((params - mu) / sd) @ Q.T).astype(np.float32))
    meta = {"ae_tag": f"oracle-params-{latent_dim}-{seed}", "latent_dim": latent_dim, "source": str(src),
            "what": "oracle stage 0: m = sqrt(D / 10) standardised(true params) @ Q^T, Q random orthonormal"}
    (view / "latents" / "meta.json").write_text(json.dumps(meta))
    return view


class CorpusWindows(Dataset):
    """Training windows of `cfg.window` frames (+ INFP*'s context frames). Either person of a conversation
    plays the avatar; the other is the user. Items follow the trainer's contract: motion (L, D),
    avatar_wave (640 L,), user_wave (640 L,), user_motion (L, D), ref (D,) = the avatar's motion at the
    clip's first frame (the reference image's motion m_S)."""

    def __init__(self, corpus_dir, cfg: ModelConfig, split: str | None = "train", stride: int | None = None):
        self.corpus = Corpus(corpus_dir)
        self.root, self.cfg = Path(corpus_dir), cfg
        self.length = cfg.window + cfg.context_frames
        stride = stride or cfg.block
        rows = _split_rows(self.corpus, split)
        missing = [p for p in {latents_path(corpus_dir, r.conversation_id, r.person) for r in rows.itertuples()}
                   if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{corpus_dir}: {len(missing)} streams have no motion latents (e.g. {missing[0]}); "
                                    "encode them first with `afsuite data latents`")
        self.items = [(r.conversation_id, r.person, r.partner, r.start_frame, s)
                      for r in rows.itertuples() for s in range(0, r.n_frames - self.length + 1, stride)]
        if not self.items:
            raise ValueError(f"{corpus_dir}: every clip in split {split!r} is shorter than {self.length} frames")
        self._latents: dict = {}

    def _stream_latents(self, conv, person):
        key = (conv, person)
        if key not in self._latents:
            self._latents[key] = np.load(latents_path(self.root, conv, person), mmap_mode="r")
        return self._latents[key]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        conv, person, partner, clip_start, offset = self.items[i]
        a, L, spf = clip_start + offset, self.length, self.cfg.samples_per_frame
        avatar, user = self._stream_latents(conv, person), self._stream_latents(conv, partner)
        wave = lambda p: torch.from_numpy(  # noqa: E731  int16 on disk
            np.asarray(self.corpus.stream(conv, p)["audio"][a * spf:(a + L) * spf], np.float32) / 32768.0)
        return {"motion": torch.from_numpy(np.array(avatar[a:a + L])), "avatar_wave": wave(person),
                "user_wave": wave(partner), "user_motion": torch.from_numpy(np.array(user[a:a + L])),
                "ref": torch.from_numpy(np.array(avatar[clip_start]))}
