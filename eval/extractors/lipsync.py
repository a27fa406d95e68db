"""Lip sync, LSE-D and LSE-C by the SyncNet protocol, with the public SyncNet or the embedded one.

Protocol (joonson/syncnet_python SyncNetInstance.evaluate, used by Wav2Lip's scores_LSE; formulas only):
* video at 25 fps, audio 16 kHz mono; MFCC at 100 Hz (13 coefficients, python_speech_features defaults);
* for every start frame v: a 5-frame window frames[v:v+5] against MFCC columns [4v, 4v+20) (0.2 s);
* audio features are zero-padded by `vshift` rows at both ends; for each offset k in [-vshift, vshift]
  the distance d[v, k] = || f_video[v] - f_audio[v + k] || (Euclidean, features as the network gives them);
* mdist[k] = mean over v; LSE-D = min_k mdist; LSE-C = median_k mdist - min_k mdist;
  offset = vshift - argmin (syncnet's sign: audio delayed by n frames gives offset -n).

`lip_sync(frames, audio, net)` runs it with any net exposing `card`, `video_windows(frames)` and
`audio_windows(mfcc)` (SyncNetPublic here, the embedded SyncNet in syncnet_embedded.py).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.fft import dct
from torch import nn

from .common import make_card, require_file

SAMPLE_RATE, FPS, SAMPLES_PER_FRAME = 16000, 25, 640
WINDOW = 5  # video frames per SyncNet window (0.2 s)
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
PUBLIC_FILE = "syncnet_v2.model"


# ---------------------------------------------------------------------------- MFCC (python_speech_features defaults)

def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(n_filters=26, nfft=512, sample_rate=SAMPLE_RATE, low_hz=0.0, high_hz=None) -> np.ndarray:
    """(n_filters, nfft // 2 + 1) triangles on FFT bins floored from mel-spaced edges."""
    high_hz = sample_rate / 2 if high_hz is None else high_hz
    mels = np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), n_filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(int)
    fb = np.zeros((n_filters, nfft // 2 + 1))
    for j in range(n_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        fb[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        fb[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    return fb


def mfcc(signal, sample_rate=SAMPLE_RATE, win_s=0.025, step_s=0.01, n_ceps=13, n_filters=26, nfft=512,
         preemph=0.97, lifter=22) -> np.ndarray:
    """(n_frames, 13) MFCC as python_speech_features.mfcc with its defaults: pre-emphasis, rectangular
    400-sample frames every 160 samples (zero-padded tail), power spectrum / nfft, 26 mel filters, log,
    orthonormal DCT-II, sinusoidal lifter 22, and c0 replaced by the log frame energy. Pass audio at the
    int16 scale (the public SyncNet saw int16 wav samples)."""
    x = np.asarray(signal, np.float64)
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    flen, fstep = round(win_s * sample_rate), round(step_s * sample_rate)
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / fstep))
    x = np.concatenate([x, np.zeros((n - 1) * fstep + flen - len(x))])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(x[idx], nfft)) ** 2 / nfft  # (n, nfft/2+1)
    eps = np.finfo(float).eps
    energy = np.where(power.sum(1) == 0, eps, power.sum(1))
    feat = power @ mel_filterbank(n_filters, nfft, sample_rate).T
    feat = np.log(np.where(feat == 0, eps, feat))
    ceps = dct(feat, type=2, axis=1, norm="ortho")[:, :n_ceps]
    ceps *= 1 + (lifter / 2.0) * np.sin(np.pi * np.arange(n_ceps) / lifter)
    ceps[:, 0] = np.log(energy)
    return ceps


def audio_to_mfcc(audio: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] (or int16) at 16 kHz -> (13, n) MFCC at the int16 scale (syncnet's input)."""
    a = np.asarray(audio)
    a = a.astype(np.float64) if a.dtype == np.int16 else np.asarray(a, np.float64) * 32768.0
    return mfcc(a).T


# ---------------------------------------------------------------------------- the protocol

def offset_distances(video_feat, audio_feat, vshift: int = 15) -> np.ndarray:
    """(n, 2*vshift+1): d[v, j] = ||video[v] - audio_padded[v + j]||, audio zero-padded by vshift both ends
    (so column j is audio offset j - vshift)."""
    v, a = torch.as_tensor(np.asarray(video_feat), dtype=torch.float64), torch.as_tensor(np.asarray(audio_feat), dtype=torch.float64)
    if v.ndim != 2 or v.shape != a.shape:
        raise ValueError(f"video and audio features must both be (n, d) with the same n; got {tuple(v.shape)}, {tuple(a.shape)}")
    padded = nn.functional.pad(a, (0, 0, vshift, vshift))
    win = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)[: len(v)]  # (n, 2*vshift+1, d)
    return torch.linalg.vector_norm(v[:, None, :] - win, dim=-1).numpy()


def sync_scores(video_feat, audio_feat, vshift: int = 15) -> dict:
    """LSE-D, LSE-C and the AV offset from per-window features (n, d) of the two streams."""
    dists = offset_distances(video_feat, audio_feat, vshift)
    mdist = dists.mean(0)
    best = int(np.argmin(mdist))
    return {"lse_d": float(mdist[best]), "lse_c": float(np.median(mdist) - mdist[best]),
            "offset": vshift - best, "audio_lag_frames": best - vshift, "vshift": vshift,
            "mean_dist_per_offset": mdist.tolist(), "n_windows": len(dists)}


@torch.no_grad()
def lip_sync(frames, audio, net, vshift: int = 15, batch: int = 64) -> dict:
    """LSE-D / LSE-C of a clip: frames (T, H, W, 3) uint8 RGB at 25 fps, audio (>= T*640,) float at 16 kHz.
    The result names the network (`extractor`) that made the numbers."""
    frames = np.asarray(frames)
    cc = audio_to_mfcc(audio)
    n = min(len(frames), len(np.asarray(audio)) // SAMPLES_PER_FRAME) - WINDOW  # as syncnet: last full window
    if n < 2 * vshift + 1:
        raise ValueError(f"clip too short for vshift={vshift}: {n + WINDOW} frames; need > {2 * vshift + 1 + WINDOW}")
    vf, af = [], []
    for s in range(0, n, batch):
        starts = range(s, min(n, s + batch))
        vf.append(net.video_windows(np.stack([frames[v:v + WINDOW] for v in starts])))
        af.append(net.audio_windows(np.stack([cc[:, MFCC_PER_FRAME * v:MFCC_PER_FRAME * v + 20] for v in starts])))
    out = sync_scores(torch.cat(vf).numpy(), torch.cat(af).numpy(), vshift)
    out["extractor"] = net.card["name"]
    out["extractor_card"] = net.card
    return out


# ---------------------------------------------------------------------------- public SyncNet (syncnet_v2.model)

def _cbr2(i, o, k, s=1, p=0):
    return [nn.Conv2d(i, o, k, s, p), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]


def _cbr3(i, o, k, s=1, p=0):
    return [nn.Conv3d(i, o, k, s, p), nn.BatchNorm3d(o), nn.ReLU(inplace=True)]


class SyncNetPublic(nn.Module):
    """The published SyncNet ('S', Chung & Zisserman 2016; syncnet_python) layer for layer, so that the
    state dict of `syncnet_v2.model` (keys netcnnaud.*, netfcaud.*, netcnnlip.*, netfclip.*) loads by name.
    Audio: (B, 1, 13, 20) MFCC -> (B, 1024). Video: (B, 3, 5, 224, 224) BGR 0..255 face crops -> (B, 1024)."""

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_cbr2(1, 64, 3, 1, 1), nn.MaxPool2d(1, 1),
            *_cbr2(64, 192, 3, 1, 1), nn.MaxPool2d(3, (1, 2)),
            *_cbr2(192, 384, 3, 1, 1), *_cbr2(384, 256, 3, 1, 1), *_cbr2(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
            *_cbr2(256, 512, (5, 4)))  # 13 x 20 -> 1 x 1
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netcnnlip = nn.Sequential(
            *_cbr3(3, 96, (5, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_cbr3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_cbr3(256, 256, (1, 3, 3), 1, (0, 1, 1)), *_cbr3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_cbr3(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_cbr3(256, 512, (1, 6, 6)))  # 5 x 224 x 224 -> 1 x 1 x 1

    def forward_aud(self, x):
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x):
        return self.netfclip(self.netcnnlip(x).flatten(1))


class PublicSyncNet:
    """Wraps SyncNetPublic with the preprocessing of the public pipeline. Frames must be face crops (the
    syncnet pipeline crops S3FD face tracks with 40 % padding); they are turned to BGR, resized to 224."""

    def __init__(self, model: SyncNetPublic, card: dict):
        self.model, self.card = model.eval(), card

    def video_windows(self, windows: np.ndarray) -> torch.Tensor:  # (B, 5, H, W, 3) uint8 RGB
        x = torch.from_numpy(np.ascontiguousarray(windows[..., ::-1])).float()  # RGB -> BGR, 0..255
        b, t, h, w, _ = x.shape
        x = x.permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w)
        if (h, w) != (224, 224):
            x = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return self.model.forward_lip(x.reshape(b, t, 3, 224, 224).permute(0, 2, 1, 3, 4))

    def audio_windows(self, mfcc_windows: np.ndarray) -> torch.Tensor:  # (B, 13, 20)
        return self.model.forward_aud(torch.from_numpy(mfcc_windows).float()[:, None])


HOW_TO_GET = (f"Put the public SyncNet weights there: the file '{PUBLIC_FILE}' that joonson/syncnet_python's "
              "download_model.sh fetches (data/syncnet_v2.model, ~54 MB), e.g. in $AF_WEIGHTS_DIR "
              "(default <repo>/data/weights/). Without it the embedded SyncNet (train_syncnet) is used.")


def load_public_syncnet(path) -> PublicSyncNet:
    """Load `syncnet_v2.model` (a torch state dict of SyncNetPublic's keys, as syncnet_python's
    loadParameters reads it). Every key must be present with its published shape."""
    path = require_file(path, f"public SyncNet weights ({PUBLIC_FILE})", HOW_TO_GET)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} could not be read as a torch state dict ({e}); expected the public "
                         f"{PUBLIC_FILE} layout (keys netcnnaud.*, netfcaud.*, netcnnlip.*, netfclip.*)") from e
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, expected a state dict ({PUBLIC_FILE} layout)")
    state = {k.removeprefix("__S__."): v for k, v in state.items()}
    model = SyncNetPublic(embed_dim=state["netfcaud.3.weight"].shape[0] if "netfcaud.3.weight" in state else 1024)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not match the {PUBLIC_FILE} layout: missing {missing[:5]} "
                         f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), shapes {wrong[:3]}")
    model.load_state_dict(state)
    return PublicSyncNet(model, make_card("syncnet-v2-public", "real", source=path,
                                          notes="joonson/syncnet_python weights; expects face-crop video"))
