"""Write notebooks/05_latency.ipynb (no outputs) with nbformat.

Run from the repo root: `.venv/bin/python notebooks/src/make_05.py`.
"""

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbwrite import KERNEL, write_notebook

PARAMETERS = '''profile = "smoke"
out_dir = "results/smoke/05_latency"
seed = 0
configs = ["tiny"]            # add "paper" for the paper config's CPU figures (seconds per block on 2 cores)
systems = ["ours", "infp", "talking"]
device = "auto"               # CUDA when present: the same harness, synchronised timers (the paper-comparable number)
dtype = "auto"                # bfloat16 autocast on CUDA (the official inference), float32 on the CPU
threads = 2                   # set explicitly: importing silero_vad sets torch to one thread
nfe = 10
nfe_list = [3, 4, 10]         # the issue's "NFE 2" has no valid step list: 3 is the smallest that runs
block_sizes = [5, 10, 25]     # paper Table 7 (window stays 50)
thread_list = [1, 2]
rounds = 8                    # timed rounds per comparison, after warm-up (interleaved)
warmup = 2
startup_repeats = 2
decode_repeats = 2
session_seconds = 20.0        # the issue's figure is 600 (a 10-minute session; `--profile full`)
session_window_s = 5.0        # first vs last window of the session (60 for 10 minutes)
kv_seconds = 4.0              # KV cache off is the O(n^2) reference path: keep it short
use_compile = False           # torch.compile (inductor): minutes of compilation on 2 cores
paper_rounds = 2              # timed rounds for the "paper" config
checkpoint = ""               # trained Avatar Forcing checkpoint (cue-to-reaction)
corpus_dir = ""               # corpus with encoded motion latents (`afsuite data latents`)
readout = ""                  # latent -> parameter readout (.pt); empty: ridge fit on the corpus' train split
cue_injections = 20
model_overrides = {}          # ModelConfig fields to change (the tests narrow the model; targets then do not apply)'''

SETUP = '''import sys
import time
from pathlib import Path

root = Path.cwd().resolve()
while not (root / "afcore").is_dir() and root != root.parent:  # Jupyter starts in the notebook's folder
    root = root.parent
sys.path.insert(0, str(root))

import pandas as pd
import torch
from IPython.display import Markdown, display
from matplotlib_inline.backend_inline import set_matplotlib_formats

from afcore.io import write_metrics
from eval.latency_bench import PROFILES, bench_latency, latency_claim
from eval.latency_plots import (breakdown_figure, cue_figure, kv_cache_figure, session_figure, summary_text,
                                sweep_table, table1_latency, table7_latency)
from eval.study.plots import save_figure

set_matplotlib_formats("png")
torch.set_num_threads(threads)
started = time.perf_counter()
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 200)
metrics, figures, tables = {}, [], {}


def show(fig, name):
    display(fig)
    save_figure(fig, out / name)
    figures.append(name)'''

RUN = '''for config in configs:
    if config == "paper" and not torch.cuda.is_available():  # on a CPU: a few rounds of the comparison only
        settings = dict(PROFILES["compare"], rounds=paper_rounds)
    else:
        settings = dict(nfe_list=nfe_list, blocks=block_sizes, thread_list=thread_list, rounds=rounds, warmup=warmup,
                        session_seconds=session_seconds, session_window_s=session_window_s, kv_seconds=kv_seconds,
                        decode_repeats=decode_repeats, startup_repeats=startup_repeats, compile=use_compile,
                        cue_injections=cue_injections)
    metrics[config] = bench_latency(config, profile="smoke", nfe=nfe, threads=threads, device=device, dtype=dtype,
                                    seed=seed, systems=systems, checkpoint=checkpoint or None,
                                    corpus_dir=corpus_dir or None, readout=readout or None,
                                    model_overrides=model_overrides or None, **settings)
    print(f"--- {config} (load average {metrics[config]['machine']['loadavg_start'][0]:.1f} at start)")
    print(summary_text(metrics[config]))'''

BREAKDOWN = '''for config, res in metrics.items():
    show(breakdown_figure(res["comparison"], res["paper"]), f"breakdown_{config}.png")
    tables[config] = {"table1": table1_latency(res)}
    display(Markdown(f"**{config}: beside the paper's Table 1 latency column** (paper: H100; here: this machine)"))
    display(tables[config]["table1"])'''

SWEEPS = '''for config, res in metrics.items():
    sw = res["sweeps"]
    if "block" in sw:
        tables[config]["table7"] = table7_latency(res)
        display(Markdown(f"**{config}: block size beside the paper's Table 7 latency column**"))
        display(tables[config]["table7"])
    if "nfe" in sw:
        tables[config]["nfe"] = sweep_table(sw["nfe"], ["system", "nfe_requested", "nfe"])
        display(Markdown(f"**{config}: NFE** ({sw['nfe']['note']})"))
        display(tables[config]["nfe"])
    if "threads" in sw:
        tables[config]["threads"] = sweep_table(sw["threads"], ["system", "threads"])
        display(Markdown(f"**{config}: torch threads** (switched before every step, interleaved)"))
        display(tables[config]["threads"])
    if "kv_cache" in sw:
        show(kv_cache_figure(sw["kv_cache"]), f"kv_cache_{config}.png")
    if "compile" in sw:
        c = sw["compile"]
        print(f"torch.compile: {c['compiled']['median_ms']:.1f} vs eager {c['eager']['median_ms']:.1f} ms per block "
              f"({c['compiled_over_eager']:.2f}x) after {c['compile_and_warmup_s']:.0f} s of compiling")'''

SESSION = '''for config, res in metrics.items():
    if "session" in res:
        show(session_figure(res["session"], 40.0 if config == "tiny" else None), f"session_{config}.png")'''

CUE = '''for config, res in metrics.items():
    show(cue_figure(res["cue_to_reaction"]), f"cue_to_reaction_{config}.png")
    for system, record in res["cue_to_reaction"].items():
        print(f"{config} {system}: {record if isinstance(record, str) else record['status']}")'''

READING = '''lines = []
for config, res in metrics.items():
    t, ratio = res["targets"], res["comparison"]["ratios"].get("infp_over_ours", {})
    ours = res["comparison"]["systems"].get("ours")
    if ours is None:
        continue
    u = ours["steady"]["per_unit"]
    lines.append(f"- **{config}** ({ours['settings']['device']}, {ours['settings']['threads']} threads, NFE "
                 f"{ours['settings']['nfe']}; load average {res['machine']['loadavg_start'][0]:.1f} -> "
                 f"{res['machine']['loadavg_end'][0]:.1f}): per-block compute p50 {u['median_ms']:.1f} ms, p95 "
                 f"{u['p95_ms']:.1f} ms; buffering + compute {ours['paper_style_ms']:.0f} ms (paper ~500 ms on an "
                 f"H100); INFP*/ours {ratio.get('paper_style_median_paired', float('nan')):.2f}x (paper 6.8x)."
                 + ("" if t.get("applies") else " The issue's targets apply to the unmodified tiny config only."))
    if t.get("applies"):
        lines.append(f"  Targets: p50 < 40 ms {t['per_block_p50_under_40ms']}, buffering + compute < 450 ms "
                     f"{t['algorithmic_plus_compute_under_450ms']}, ratio >= 6.8 {t['ratio_at_least_paper']}"
                     + (f", session flat within 10% {t['session_flat_within_10pct']}" if "session_flat_within_10pct" in t
                        else ""))
    if "ratio_holds_while_ours_compute_below_ms" in t:
        lines.append(f"  With INFP*'s window costing {ratio['compute_only_median_paired']:.1f}x our block, the ratio "
                     f"stays >= 6.8 while our per-block compute is below "
                     f"{t['ratio_holds_while_ours_compute_below_ms']:.0f} ms, and buffering + compute stays < 450 ms "
                     f"while it is below {t['under_450ms_while_ours_compute_below_ms']:.0f} ms.")
display(Markdown("**Reading.** Timings on a shared machine are noisy; medians and ratios of interleaved rounds are "
                 "the robust figures. Buffering dominates both latencies, so the ratio is set mostly by the window "
                 "sizes (3.0 s vs 0.4 s).\\n" + "\\n".join(lines)))'''

WRITE = '''for config, tabs in tables.items():
    metrics[config]["tables"] = {name: df.to_dict("records") for name, df in tabs.items()}
metrics["claims"] = [latency_claim(metrics[c]) for c in configs if "comparison" in metrics[c]]
path = write_metrics(out, metrics, profile=profile, seed=seed, configs=configs, figures=figures,
                     parameters={"systems": systems, "device": device, "dtype": dtype, "threads": threads, "nfe": nfe,
                                 "nfe_list": nfe_list, "block_sizes": block_sizes, "thread_list": thread_list,
                                 "rounds": rounds, "warmup": warmup, "session_seconds": session_seconds,
                                 "kv_seconds": kv_seconds, "use_compile": use_compile, "checkpoint": checkpoint,
                                 "corpus_dir": corpus_dir, "model_overrides": model_overrides},
                     wall_time_s=round(time.perf_counter() - started, 2))
print(f"wrote {path}")'''


def latency_notebook():
    md = new_markdown_cell
    cells = [
        md("# 05 · Latency: buffering, start-up, compute and cue-to-reaction, against the baselines\n\n"
           "The paper reports ~500 ms for Avatar Forcing against 3.4 s for INFP* (6.8x), as \"motion generation "
           "time with 10 NFEs\" on an H100 with audio features pre-extracted. That figure mixes waiting for input "
           "with compute. Here the parts are measured apart, on this machine, for ours, the INFP*-style "
           "bidirectional baseline and the talking-only model in the same process, interleaved unit by unit so "
           "that machine drift cancels in the ratio. Everything comes from `eval.latency*`; "
           "`afsuite bench latency` runs the same code without the notebook. Weights are untrained (the cost of a "
           "matmul does not depend on them) except for cue-to-reaction, which needs a trained checkpoint."),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(SETUP),
        md("## Measure\n\nPer config: the comparison (algorithmic buffering, start-up, steady-state compute and its "
           "split, decoding), the sweeps (NFE, block size, threads, KV cache, torch.compile), a long session, "
           "and cue-to-reaction."),
        new_code_cell(RUN),
        md("## Latency breakdown, beside the paper's Table 1\n\nBars: buffering + condition encoding + denoising + "
           "KV-cache write (medians), then decoding the first 10 frames (measured as its own term: the same "
           "autoencoder for every system). The paper-style figure is buffering + generation compute."),
        new_code_cell(BREAKDOWN),
        md("## Block size (paper Table 7), NFE, threads, KV cache, torch.compile"),
        new_code_cell(SWEEPS),
        md("## Per-block cost over a long session\n\nA flat line means the rolling KV cache and the absolute "
           "positions keep the cost and memory constant."),
        new_code_cell(SESSION),
        md("## Cue-to-reaction\n\nA real smile of the user is added to the user's motion stream at a random calm "
           "frame; the avatar is generated with and without it from the same noise, and the onset of the "
           "difference (read out as the smile parameter) is compared with the cue's onset. End to end adds the "
           "block buffering and the per-block compute. Needs a trained checkpoint and a corpus with latents."),
        new_code_cell(CUE),
        new_code_cell(READING),
        new_code_cell(WRITE),
    ]
    return new_notebook(cells=cells, metadata=KERNEL)


if __name__ == "__main__":
    write_notebook(latency_notebook(), "notebooks/05_latency.ipynb")
