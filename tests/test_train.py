"""Training machinery: exact resume after SIGKILL, DDP with gloo, loss going down, checkpoint contents, DPO
with both loser kinds, and errors that name the file."""
import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from afcore import train, train_cli
from afcore.config import get_config
from afcore.model import AvatarForcing, load_checkpoint, save_checkpoint
from afcore.objectives import diffusion_forcing_loss
from afcore.train_cli import main as cli_main

SETS = ["--set", "depth=2", "--set", "hidden=64", "--set", "audio_hidden=32"]
SMALL = dict(depth=2, hidden=64, audio_hidden=32)


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on shared, loaded cores two OpenMP threads spin against each other (10x slower here)."""
    torch.set_num_threads(1)


def small(name="tiny"):
    return get_config(name, **SMALL)


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(*args):
    return [sys.executable, "-m", "afcore.train_cli", *args]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """30 smoke steps of a small model on 8 fixed synthetic windows (shared by several tests)."""
    out = tmp_path_factory.mktemp("smoke")
    cfg = small()
    dataset = train.RandomWindows(cfg, size=8)
    with train.runtime("cpu", threads=1) as rt:
        summary = train.stage1(cfg, dataset, train.get_profile("smoke", steps=30), out, rt=rt)
    return out, cfg, dataset, summary


def held_out_loss(model, dataset):
    """DF loss on 4 fixed windows with fixed noise, times and no dropout: comparable across models."""
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    with torch.no_grad():
        b = model.batch(*(batch[k] for k in train.WINDOW_KEYS))
        return sum(diffusion_forcing_loss(model.generator, b, torch.Generator().manual_seed(s), cond_dropout=0.0)
                   for s in range(4)).item() / 4


def test_paper_profile_follows_the_paper():
    p = train.get_profile("paper")
    assert (p.lr, p.batch_size, p.steps, p.grad_clip) == (1e-4, 8, 2_000_000, None)
    d = train.get_profile("paper", "dpo")
    assert (d.steps, d.lam, d.beta, d.loser) == (5000, 0.1, 1000.0, "talking")
    assert train.get_profile("smoke", "dpo", steps=3).steps == 3
    with pytest.raises(KeyError, match="choose from"):
        train.get_profile("huge")


def test_sampler_is_seeded_resumable_and_sharded():
    def take(it, k):
        return [next(it) for _ in range(k)]

    full = take(iter(train.WindowBatches(10, 4, seed=3)), 10)
    assert take(iter(train.WindowBatches(10, 4, seed=3, start_step=4)), 6) == full[4:]
    flat = sum(full, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # epochs are permutations
    assert flat[:10] != flat[10:20] and flat != sum(take(iter(train.WindowBatches(10, 4, seed=4)), 10), [])
    ranks = [take(iter(train.WindowBatches(10, 4, seed=3, rank=r, world=2)), 10) for r in range(2)]
    for b, r0, r1 in zip(full, *ranks):
        assert r0 == b[0::2] and r1 == b[1::2]


def test_smoke_run_lowers_held_out_loss_and_checkpoint_has_what_resume_needs(smoke_run):
    out, cfg, dataset, summary = smoke_run
    torch.manual_seed(0)  # the smoke profile's seed: the exact initialisation of the run
    before = held_out_loss(AvatarForcing(cfg), dataset)
    model, state = load_checkpoint(out / "last.pt")
    after = held_out_loss(model, dataset)
    assert after < 0.9 * before, (before, after)  # same noise and times: the drop is the training's
    assert set(train.RESUME_KEYS) <= set(state) and state["step"] == 30 and state["stage"] == "stage1"
    assert set(state["rng"]) >= {"torch", "numpy", "python"} and state["sampler"]["epoch"] == 30 * 2 // 8
    assert state["optimizer"]["state"] and state["profile"]["lr"] == 1e-3 and state["config"]["depth"] == 2
    rows = read_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    assert all(float(r["steps_per_s"]) > 0 for r in rows) and summary["steps_per_s"] > 0
    assert summary["weights_digest"] == train.weights_digest(model)


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    args = [*SETS, "--data", "synthetic", "--threads", "1", "--profile-set", "steps=20",
            "--profile-set", "ckpt_every=3", "--profile-set", "log_every=2"]
    broken = tmp_path / "broken"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cli("stage1", *args, "--out", str(broken)), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 60
        while proc.poll() is None and not (broken / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = torch.load(broken / "last.pt", weights_only=False)["step"]
    assert 0 < killed_at < 20
    resumed = subprocess.run(cli("stage1", *args, "--out", str(broken), "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"(from {killed_at})" in resumed.stdout

    cfg = small()  # the unbroken run, in this process: same code, same thread count
    with train.runtime("cpu", threads=1) as rt:
        train.stage1(cfg, train.RandomWindows(cfg), train.get_profile("smoke", steps=20, ckpt_every=3, log_every=2),
                     tmp_path / "unbroken", rt=rt)
    a = torch.load(broken / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "unbroken" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 20
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for i, s in b["optimizer"]["state"].items():
        assert all(torch.equal(a["optimizer"]["state"][i][k], v) for k, v in s.items())
    log_a, log_b = read_log(broken / "log.csv"), read_log(tmp_path / "unbroken" / "log.csv")
    assert [(r["step"], r["loss"]) for r in log_a] == [(r["step"], r["loss"]) for r in log_b]


def test_ddp_two_gloo_processes_train_identical_replicas(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp"
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "afcore.train_cli", "stage1",
                          *SETS, "--data", "synthetic", "--device", "cpu", "--threads", "1", "--profile-set",
                          "steps=4", "--profile-set", "log_every=2", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())["metrics"]
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert len(summary["rank_weights_digests"]) == 2 and summary["replicas_identical"]
    model, state = load_checkpoint(out / "last.pt")
    assert state["world_size"] == 2 and train.weights_digest(model) == summary["weights_digest"]
    torch.manual_seed(0)
    assert train.weights_digest(AvatarForcing(small())) != summary["weights_digest"]  # it did train
    assert [r["step"] for r in read_log(out / "log.csv")] == ["2", "4"]


@pytest.mark.parametrize("loser", ["dropped", "talking"])
def test_dpo_runs_with_both_losers_and_logs_preference_stats(smoke_run, tmp_path, loser):
    init = smoke_run[0]
    extra = []
    if loser == "talking":
        torch.manual_seed(1)
        talking = AvatarForcing(small("tiny-talking"))
        with torch.no_grad():  # untrained but not the zero-init model, whose samples are pure noise
            for p in talking.generator.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        save_checkpoint(tmp_path / "talking.pt", talking)
        extra = ["--loser-model", str(tmp_path / "talking.pt")]
    out = tmp_path / "dpo"
    rc = cli_main(["dpo", "--init", str(init / "last.pt"), "--loser", loser, *extra, "--data", "synthetic",
                   "--threads", "1", "--profile-set", "steps=3", "--profile-set", "log_every=1", "--out", str(out)])
    assert rc == 0
    rows = read_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    # Step 1 runs before any update: policy == frozen reference, so the margin is 0 and L_DPO = log 2 (up to
    # float rounding: the no-grad reference takes other kernels, and beta = 1000 magnifies the last bits).
    assert abs(float(rows[0]["reward_margin"])) < 1e-2
    assert float(rows[0]["dpo_weight"]) == pytest.approx(0.5, abs=1e-2)  # sigmoid(0): DPO's gradient at full weight
    assert float(rows[0]["dpo_loss"]) == pytest.approx(math.log(2), abs=1e-3)
    # Two updates later the policy prefers the winners: the margin grew far beyond rounding.
    assert float(rows[2]["reward_margin"]) > 1.0 and 0.0 <= float(rows[2]["implicit_acc"]) <= 1.0
    assert float(rows[2]["dpo_weight"]) < 0.5  # winners preferred: DPO's gradient already weaker
    for r in rows:  # L_ft = L_DF + lambda L_DPO
        assert float(r["loss"]) == pytest.approx(float(r["df_loss"]) + 0.1 * float(r["dpo_loss"]), rel=1e-6)
    tuned, state = load_checkpoint(out / "last.pt")
    start, _ = load_checkpoint(init / "last.pt")
    assert state["stage"] == "dpo" and state["meta"]["loser"] == loser
    assert state["meta"]["init_digest"] == train.weights_digest(start)
    assert train.weights_digest(tuned.audio) == train.weights_digest(start.audio)  # frozen
    assert train.weights_digest(tuned.generator) != train.weights_digest(start.generator)


def test_losers_ignore_the_user_and_follow_the_avatar_audio(smoke_run):
    init, _, dataset, _ = smoke_run
    model, _ = load_checkpoint(init / "last.pt")
    window = torch.utils.data.default_collate([dataset[0], dataset[1]])
    other_user = {**window, "user_wave": torch.randn_like(window["user_wave"]) * 0.3,
                  "user_motion": torch.randn_like(window["user_motion"])}
    other_avatar = {**window, "avatar_wave": torch.randn_like(window["avatar_wave"]) * 0.3}
    losers = [train.make_losers(model, w, torch.Generator().manual_seed(0), nfe=4)
              for w in (window, other_user, other_avatar)]
    assert losers[0].shape == window["motion"].shape and torch.isfinite(losers[0]).all()
    assert torch.equal(losers[0], losers[1])
    assert not torch.allclose(losers[0], losers[2])


def test_missing_corrupt_or_foreign_checkpoints_give_errors_naming_the_file(smoke_run, tmp_path, capsys):
    init, cfg, dataset, _ = smoke_run
    profile = train.get_profile("smoke", steps=2)
    empty = tmp_path / "empty"
    with pytest.raises(train.TrainError, match=f"{empty / 'last.pt'}: no checkpoint here"):
        train.stage1(cfg, dataset, profile, empty, resume=True)
    for name, payload in [("garbage", b"not a checkpoint"), ("truncated", (init / "last.pt").read_bytes()[:5000])]:
        path = tmp_path / name / "last.pt"
        path.parent.mkdir()
        path.write_bytes(payload)
        with pytest.raises(train.TrainError, match=f"{path}: cannot read this checkpoint.*corrupt"):
            train.stage1(cfg, dataset, profile, path.parent, resume=True)
    model_only = tmp_path / "model_only" / "last.pt"
    save_checkpoint(model_only, AvatarForcing(cfg))
    with pytest.raises(train.TrainError, match=f"{model_only}: not a resumable training checkpoint"):
        train.stage1(cfg, dataset, profile, model_only.parent, resume=True)
    with pytest.raises(train.TrainError, match=r"written by a different run \(profile lr: 0.001 -> 0.01"):
        train.stage1(cfg, dataset, train.get_profile("smoke", lr=1e-2), init, resume=True)
    missing = tmp_path / "nowhere.pt"
    assert cli_main(["dpo", "--init", str(missing), "--data", "synthetic", "--out", str(tmp_path / "x")]) == 2
    assert f"{missing}: no checkpoint here" in capsys.readouterr().err
    assert cli_main(["dpo", "--init", str(init / "last.pt"), "--loser", "talking", "--data", "synthetic",
                     "--out", str(tmp_path / "y")]) == 2
    assert "--loser-model" in capsys.readouterr().err
    assert cli_main(["stage1", "--set", "depht=2", "--data", "synthetic", "--out", str(tmp_path / "z")]) == 2
    assert "'depht=2': expected KEY=VALUE with KEY a model config field" in capsys.readouterr().err


def test_register_adds_train_stage1_and_dpo_to_afsuite():
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "stage1", "--set", "depth=2", "--data", "synthetic", "--out", "x"])
    assert args.func is train_cli.cmd_stage1 and args.set == ["depth=2"] and args.profile == "smoke"
    args = parser.parse_args(["train", "dpo", "--init", "a.pt", "--loser", "dropped", "--beta", "10", "--data",
                              "synthetic", "--out", "x"])
    assert args.func is train_cli.cmd_dpo and train_cli._profile(args, "dpo").beta == 10.0
