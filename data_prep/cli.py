"""`afsuite data ...`: build the synthetic corpus (`synth`) or ingest real dyadic videos (`ingest`)."""
from __future__ import annotations

import argparse
import sys
import time

from data_prep.layouts import LAYOUTS
from data_prep.vad import BACKENDS as VAD_BACKENDS


def _synth(args) -> int:
    from data_prep.corpus import Corpus
    from data_prep.synth.build import SynthConfig, build_corpus

    cfg = SynthConfig(hours=args.hours, seed=args.seed, size=args.size, workers=args.workers, voice=args.voice,
                      clip_seconds=args.clip_seconds, mp4=not args.no_mp4, reactivity=args.reactivity)
    t0 = time.time()
    try:
        out = build_corpus(args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, FileExistsError, RuntimeError) as err:
        print(f"afsuite data synth: error: {err}", file=sys.stderr)
        return 2
    print(f"{Corpus(out)} written in {time.time() - t0:.1f} s")
    return 0


def _ingest(args) -> int:
    from data_prep.corpus import Corpus
    from data_prep.ingest import IngestConfig, ingest

    cfg = IngestConfig(size=args.size, layout=args.layout, detect_every=args.detect_every, vad=args.vad,
                       pyannote_model=args.pyannote_model,
                       clip_seconds=args.clip_seconds, seed=args.seed, mp4=not args.no_mp4,
                       scene_cuts=not args.no_scene_cuts, scene_k=args.scene_k, scene_threshold=args.scene_threshold)
    try:
        out = ingest(args.src, args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as err:
        print(f"afsuite data ingest: error: {err}", file=sys.stderr)
        return 2
    corpus = Corpus(out)
    source = corpus.meta.get("params_source")
    print(f"{corpus} ingested; face parameters: {source or 'not extracted (params are NaN): ' + str(corpus.meta.get('params_note'))}")
    return 0


def _latents(args) -> int:
    from afcore.data import encode_corpus_latents
    from afcore.train_ae import ae_tag, load_autoencoder

    try:
        ae, _ = load_autoencoder(args.autoencoder)
        out = encode_corpus_latents(args.corpus, ae, ae_tag(ae), progress=not args.quiet)
    except (FileNotFoundError, ValueError) as err:
        print(f"afsuite data latents: error: {err}", file=sys.stderr)
        return 2
    print(f"motion latents of every stream in {out}")
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build or ingest conversation corpora")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("synth", help="generate the embedded synthetic dyadic-conversation corpus",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hours", type=float, default=1.0, help="hours of conversation (each has two people)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="stored frame size in pixels (even, 32-1024)")
    p.add_argument("--out", default="data/corpus", help="corpus folder (written atomically)")
    p.add_argument("--workers", type=int, default=2, help="processes rendering conversations")
    p.add_argument("--voice", default="auto", choices=("auto", "espeak", "formant"),
                   help="speech backend: espeak-ng if installed (auto), or the built-in formant voice")
    p.add_argument("--clip-seconds", type=float, default=15.0, help="conversations are split into clips of ~this length")
    p.add_argument("--reactivity", type=float, default=None,
                   help="give every identity this reactivity in [0, 1] (default: drawn per identity)")
    p.add_argument("--no-mp4", action="store_true", help="skip the per-conversation preview videos")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)
    p = sub.add_parser("latents", help="encode every stream's frames to motion latents with a trained autoencoder")
    p.add_argument("--corpus", required=True, help="corpus folder (latents go to CORPUS/latents/)")
    p.add_argument("--autoencoder", required=True, help="autoencoder.pt from `afsuite train ae`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_latents)
    q = sub.add_parser("ingest", help="turn a folder of real dyadic videos into a corpus (first version, see data_prep/ingest.py)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("--src", required=True, help="folder of <conv>.mp4 (A left, B right) or <conv>_A.mp4 + <conv>_B.mp4, "
                                                "or a ViCo release folder (videos/, audios/)")
    q.add_argument("--out", default="data/corpus_real")
    q.add_argument("--size", type=int, default=64)
    q.add_argument("--layout", default="auto", choices=LAYOUTS,
                   help="pair: <conv>_A/<conv>_B files; side-by-side: A left, B right; vico: the ViCo release's "
                        "videos/<uuid>.speaker|listener.mp4 + audios/<uuid>.wav (data_prep/layouts.py)")
    q.add_argument("--detect-every", type=int, default=5, help="run the face detector every n frames")
    q.add_argument("--vad", default="auto", choices=VAD_BACKENDS,
                   help="voice activity: silero-vad (auto, if installed), energy, or pyannote (needs --pyannote-model)")
    q.add_argument("--pyannote-model", default=None, metavar="PATH",
                   help="local pyannote.audio segmentation checkpoint (pytorch_model.bin or its folder) for "
                        "--vad pyannote; nothing is downloaded")
    q.add_argument("--clip-seconds", type=float, default=15.0)
    q.add_argument("--seed", type=int, default=0, help="seeds the split assignment")
    q.add_argument("--no-scene-cuts", action="store_true",
                   help="do not split conversations at detected shot changes (data_prep/scenes.py)")
    q.add_argument("--scene-k", type=float, default=6.0,
                   help="adaptive scene-cut threshold: a cut scores above median + K * MAD of the scores around it")
    q.add_argument("--scene-threshold", type=float, default=None,
                   help="fixed scene-cut score threshold in (0, 1) instead of the adaptive one (e.g. 0.25)")
    q.add_argument("--no-mp4", action="store_true")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_ingest)

