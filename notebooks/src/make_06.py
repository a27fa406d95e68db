"""Write notebooks/06_preference_study.ipynb and eval/study/rate.ipynb (no outputs) with nbformat.

Run from the repo root: `.venv/bin/python notebooks/src/make_06.py`.
"""
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbwrite import KERNEL, write_notebook

FIND_REPO = '''import sys
from pathlib import Path

root = Path.cwd().resolve()
while not (root / "afcore").is_dir() and root != root.parent:  # Voila/Jupyter start in the notebook's folder
    root = root.parent
sys.path.insert(0, str(root))'''

PARAMETERS = '''profile = "smoke"
out_dir = "results/smoke/06_preference_study"
seed = 0
n_boot = 2000                 # bootstrap replicates for the clustered intervals
criteria = ["Reactiveness", "Motion Richness", "Verbal Alignment", "Non-verbal Alignment", "Overall"]
# (a) the paper's published shares
paper_version = "v2"          # "v2" (Table 2) or "project_page" (Jan-2026 figure)
paper_raters = 42
paper_sets = 12
# (b) votes collected with the rating form (or imported from a survey)
votes_files = []              # e.g. ["results/study/votes.csv"]
systems = []                  # order of systems: A of each pair is the earlier one (empty: alphabetical)
# (c) a SIMULATED study with known truth (used by the tests)
simulate = False
sim_strengths = {"Ours": 1.5, "INFP*": 0.0}   # Bradley-Terry log-strengths
sim_raters = 42
sim_sets = 12
sim_tie_rate = 0.1
sim_left_share = 0.6          # planted side bias: share of decisive votes going to the left
sim_rater_sd = 0.8
sim_set_sd = 0.4
# the rating form: set both to rate in this notebook (or use eval/study/rate.ipynb in Voila)
study_manifest = ""
form_votes_file = ""'''

SETUP = FIND_REPO + '''
import time

import pandas as pd
from IPython.display import Markdown, display
from matplotlib_inline.backend_inline import set_matplotlib_formats

from afcore.io import write_metrics
from eval.study.analyze import analyze, study_claim, summary_table
from eval.study.paper import PAPER_SHARES, paper_counts, reconstruct_paper_votes
from eval.study.plots import position_bias_plot, preference_bars, save_figure, save_figures
from eval.study.simulate import simulate_votes
from eval.study.votes import read_votes

set_matplotlib_formats("png")  # display(fig) of pyplot-free Figures
started = time.perf_counter()
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 200)
metrics, figures = {}, []


def pct(ci):
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "n/a"'''

PAPER = '''paper_votes = reconstruct_paper_votes(paper_version, paper_raters, paper_sets, clustering="spread")
worst_votes = reconstruct_paper_votes(paper_version, paper_raters, paper_sets, clustering="by_rater")
paper = analyze(paper_votes, systems=["Ours", "INFP*"], criteria=criteria, n_boot=n_boot, seed=seed)
worst = analyze(worst_votes, systems=["Ours", "INFP*"], criteria=criteria, n_boot=n_boot, seed=seed)
pair = "Ours__vs__INFP*"

rows = []
for c in paper["criteria"]:
    s, w = paper["criteria"][c][pair], worst["criteria"][c][pair]
    printed = PAPER_SHARES[paper_version][c]
    rows.append({"criterion": c, "printed Ours/Tie/INFP* %": "/".join("?" if v is None else str(v) for v in printed),
                 "counts": f"{s['a_wins']}/{s['ties']}/{s['b_wins']}", "Ours %": round(100 * s["a_share"], 2),
                 "Wilson": pct(s["a_share_wilson_ci"]), "Clopper-Pearson": pct(s["a_share_clopper_pearson_ci"]),
                 "cluster (spread)": pct(s["a_share_cluster_bootstrap_ci"]),
                 "cluster (worst case)": pct(w["a_share_cluster_bootstrap_ci"]),
                 "Ours % of non-tie": round(100 * s["a_share_decisive"], 1),
                 "non-tie cluster (worst case)": pct(w["a_share_decisive_cluster_bootstrap_ci"]),
                 "sign test p": f"{s['sign_test_p']:.1e}"})
display(pd.DataFrame(rows))
fig = preference_bars(paper, pair, interval="cluster",
                      title=f"RECONSTRUCTED from the paper's {paper_version} percentages (not raw data)")
display(fig)
save_figure(fig, out / "paper_reconstruction.png")
figures.append("paper_reconstruction.png")

overall, overall_worst = paper["criteria"]["Overall"][pair], worst["criteria"]["Overall"][pair]
weakest = min(paper["criteria"], key=lambda c: worst["criteria"][c][pair]["a_share_decisive_cluster_bootstrap_ci"][0])
weak = worst["criteria"][weakest][pair]
weak_ci = weak["a_share_decisive_cluster_bootstrap_ci"]
display(Markdown(
    f"**Reading.** Overall: Ours won {100 * overall['a_share']:.1f}% of {overall['n']} judgements "
    f"(Wilson {pct(overall['a_share_wilson_ci'])}, sign test p = {overall['sign_test_p']:.1e}). Even if each rater "
    f"had voted one way throughout (the worst case the totals allow), the rater x set bootstrap interval is "
    f"{pct(overall_worst['a_share_cluster_bootstrap_ci'])}. The weakest claim is {weakest}: Ours took "
    f"{100 * weak['a_share_decisive']:.1f}% of the non-tie votes, worst-case interval "
    f"{pct(weak_ci)}, {'still above' if weak_ci[0] > 0.5 else 'not clearly above'} 50%. "
    f"Agreement (Fleiss' kappa) and side bias cannot be judged from published percentages: they depend on the "
    f"unknown assignment of votes."))
metrics["paper_reconstruction"] = {
    "note": "RECONSTRUCTED from the paper's aggregate percentages, not raw data; rater clustering and sides are "
            "unknown. 'analysis' spreads votes over raters at random; 'worst_case_rater_clustering' lets each "
            "rater vote one way throughout. Fleiss' kappa and position_bias are NOT informative here.",
    "version": paper_version, "printed_shares": PAPER_SHARES[paper_version],
    "counts": paper_counts(paper_version, paper_raters * paper_sets),
    "analysis": paper,
    "worst_case_rater_clustering": {c: {k: worst["criteria"][c][pair][k] for k in (
        "a_share_cluster_bootstrap_ci", "a_share_decisive_cluster_bootstrap_ci")} for c in worst["criteria"]},
}'''

COLLECTED = '''collected = None
if votes_files:
    votes = read_votes(votes_files, criteria=criteria)
    collected = analyze(votes, systems=systems or None, criteria=criteria, n_boot=n_boot, seed=seed)
    collected["votes_files"] = [str(p) for p in votes_files]
    display(summary_table(collected))
    display(pd.DataFrame({c: k for c, k in collected["fleiss_kappa"].items()}).T)
    pb = collected["position_bias"]
    print(f"position bias: left share {pb['left_share']:.3f} of {pb['n_decisive']} non-tie votes, "
          f"p = {pb['p']:.3g}, rater x set interval {pct(pb['left_share_cluster_bootstrap_ci'])}")
    names = save_figures(collected, out / "collected")
    figures += [str(p.relative_to(out)) for p in names]
    for p in collected["criteria"][collected["criteria_order"][0]]:
        display(preference_bars(collected, p))
    display(position_bias_plot(collected))
else:
    print("No votes_files given: collect votes with the rating form (section 4) or `afsuite study import`.")
metrics["collected"] = collected'''

SIMULATED = '''simulated = None
if simulate:
    sim_systems = list(sim_strengths)
    sim_votes, truth = simulate_votes(sim_systems, criteria, sim_strengths, sim_raters, sim_sets, sim_tie_rate,
                                      sim_left_share, sim_rater_sd, sim_set_sd, seed)
    sim = analyze(sim_votes, systems=sim_systems, criteria=criteria, n_boot=n_boot, seed=seed)
    rows, recovered = [], {}
    for c in sim["criteria"]:
        for p, s in sim["criteria"][c].items():
            planted = truth["criteria"][c][p]["a_share"]
            lo, hi = s["a_share_cluster_bootstrap_ci"]
            recovered[f"{c}|{p}"] = bool(lo <= planted <= hi)
            rows.append({"criterion": c, "pair": p, "planted A share": round(planted, 3),
                         "estimate": round(s["a_share"], 3), "cluster interval": pct(s["a_share_cluster_bootstrap_ci"]),
                         "Wilson": pct(s["a_share_wilson_ci"]), "inside": recovered[f"{c}|{p}"]})
    display(Markdown("**SIMULATED data** (known truth, not a real study):"))
    display(pd.DataFrame(rows))
    pb, planted_left = sim["position_bias"], truth["position_bias"]["left_share"]
    lo, hi = pb["left_share_cluster_bootstrap_ci"]
    recovered["position_bias"] = bool(lo <= planted_left <= hi)
    print(f"side bias: planted left share {planted_left:.3f}, estimated {pb['left_share']:.3f} "
          f"{pct(pb['left_share_cluster_bootstrap_ci'])}, p = {pb['p']:.2g}")
    fig = preference_bars(sim, f"{sim_systems[0]}__vs__{sim_systems[1]}", title="SIMULATED votes (known truth)")
    display(fig)
    save_figure(fig, out / "simulated.png")
    figures.append("simulated.png")
    simulated = {"note": "SIMULATED votes with known preferences and a planted side bias", "truth": truth,
                 "analysis": sim, "recovered": recovered}
metrics["simulated"] = simulated'''

FORM = '''if study_manifest:
    from eval.study.form import RatingForm
    form = RatingForm(study_manifest, form_votes_file or str(Path(study_manifest).with_name("votes.csv")))
    display(form.widget)
else:
    print("No study_manifest given. Build one with `afsuite study build`, then set study_manifest here "
          "or serve eval/study/rate.ipynb with Voila.")'''

WRITE = '''metrics["claims"] = [study_claim(metrics["collected"])]
path = write_metrics(out, metrics, profile=profile, seed=seed, n_boot=n_boot, figures=figures,
                     parameters={"paper_version": paper_version, "votes_files": votes_files, "systems": systems,
                                 "criteria": criteria, "simulate": simulate},
                     wall_time_s=round(time.perf_counter() - started, 2))
print(f"wrote {path}")'''


def preference_notebook():
    md = new_markdown_cell
    cells = [
        md("# 06 · Preference study: how strong is the evidence, and how to collect your own\n\n"
           "The paper's third claim is a human study (42 raters x 12 video sets, Ours / Tie / INFP* on five "
           "criteria, 80.3% overall preference) reported without any statistics. This notebook (a) rebuilds "
           "vote counts from the published shares and tests them, (b) analyses votes you collected with the "
           "rating form, and (c) on SIMULATED votes with a known truth, shows that the estimators recover what "
           "was planted. All statistics come from `eval.study` (see `eval/study/README.md`)."),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(SETUP),
        md("## (a) The paper's numbers, RECONSTRUCTED from aggregate percentages\n\n"
           "These are **not raw data**: the paper only prints shares. Counts are the nearest integers out of "
           "42 x 12 = 504 judgements per criterion; the two unlabelled Tie shares (Motion Richness, Overall) are "
           "derived as 100% minus the rest. Which rater gave which vote is **unknown**, so the clustered "
           "interval is shown twice: votes spread at random over raters, and the worst case where each rater "
           "votes one way throughout. *A share* is over all votes (ties included); the sign test uses the "
           "non-tie votes only."),
        new_code_cell(PAPER),
        md("## (b) Votes collected with the form\n\nSet `votes_files` to one or more votes CSVs "
           "(`rater_id, set_id, criterion, left_system, right_system, choice`)."),
        new_code_cell(COLLECTED),
        md("## (c) SIMULATED study with known truth\n\nRun with `simulate = True`. Raters and sets carry "
           "random effects (so votes of one rater are correlated), and a side bias is planted. The planted A "
           "share should fall inside the rater x set bootstrap interval, and the side bias should be detected."),
        new_code_cell(SIMULATED),
        md("## Rating form\n\nSet `study_manifest` to show the form here (answers are saved at once)."),
        new_code_cell(FORM),
        new_code_cell(WRITE),
    ]
    return new_notebook(cells=cells, metadata=KERNEL)


def rating_notebook():
    code = FIND_REPO + '''
from eval.study.form import RatingForm

RatingForm(study_manifest, votes_file).widget'''
    params = '''# Voila: `AFSUITE_STUDY_MANIFEST=... AFSUITE_STUDY_VOTES=... voila eval/study/rate.ipynb`
import os

study_manifest = os.environ.get("AFSUITE_STUDY_MANIFEST", "study/study.json")
votes_file = os.environ.get("AFSUITE_STUDY_VOTES", "study/votes.csv")'''
    cells = [new_markdown_cell("# Avatar preference study\n\nWatch each video: the user is on top, two avatars "
                               "below. For every question choose the left avatar, the right one, or Tie. Each "
                               "answer is saved at once and cannot be changed; you can stop and resume later "
                               "with the same rater id."),
             new_code_cell(params, metadata={"tags": ["parameters"]}),
             new_code_cell(code)]
    return new_notebook(cells=cells, metadata=KERNEL)


if __name__ == "__main__":
    write_notebook(preference_notebook(), "notebooks/06_preference_study.ipynb")
    write_notebook(rating_notebook(), "eval/study/rate.ipynb")
