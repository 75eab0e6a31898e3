"""The supervised stages on a tiny synthetic instance: each stage runs, resume is exact, DDP works, bad
checkpoints fail clearly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from adafocus import checkpoint
from adafocus.agents.defaults import load_hyperparams
from adafocus.config import RunConfig, from_dict, to_dict
from adafocus.models import build_model
from adafocus.pipeline import run_policy, run_supervised
from adafocus.run_evaluation import evaluate_run

from conftest import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # the synthetic data of these tests go to a tmp cache
        patch.setenv("ADAFOCUS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield tiny_run_config()


def _metrics(path: Path) -> dict:
    return checkpoint.load(path)["metrics"]


def test_each_stage_runs_and_writes_logs(tiny_config, tmp_path):
    warm = run_supervised(tiny_config, "warmup", tmp_path, progress=False)
    stage1 = run_supervised(tiny_config, "stage1", tmp_path, init=warm, progress=False)
    for stage in ("warmup", "stage1"):
        folder = tmp_path / stage
        rows = (folder / "log.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + tiny_config.stage1.epochs and rows[0].startswith("epoch,train_loss,top1,mAP")
        assert any((folder / "tensorboard").iterdir())
    state = checkpoint.load(stage1)
    assert state["epoch"] == 1 and set(state) >= {"model", "optimizer", "scheduler", "config", "metrics"}
    assert 0.0 <= state["metrics"]["top1"] <= 1.0
    # stage I leaves f_G untouched (frozen) and changes f_L
    before, after = build_model(tiny_config, warm), build_model(tiny_config, stage1)
    assert torch.equal(before.global_encoder.trunk[0][0].weight, after.global_encoder.trunk[0][0].weight)
    assert not torch.equal(before.local_encoder.trunk[0].weight, after.local_encoder.trunk[0].weight)
    # a finished stage is reused, not retrained
    mtime = stage1.stat().st_mtime_ns
    assert run_supervised(tiny_config, "stage1", tmp_path, init=warm, progress=False) == stage1
    assert stage1.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("patches", ["oracle", "center", "none"])
def test_stage1_patch_placements(tiny_config, tmp_path, patches):
    config = replace(tiny_config, stage1=replace(tiny_config.stage1, epochs=1, patches=patches))
    assert run_supervised(config, "stage1", tmp_path, progress=False).is_file()


def test_stage3_and_evaluation_under_a_learned_policy(tiny_config, tmp_path):
    stage1 = run_supervised(tiny_config, "stage1", tmp_path, progress=False)
    policy = run_policy(tiny_config, tmp_path, stage1, progress=False)
    assert policy.is_file() and policy.with_suffix(".json").is_file()
    stage3 = run_supervised(tiny_config, "stage3", tmp_path, init=stage1, policy=policy, progress=False)
    before, after = build_model(tiny_config, stage1), build_model(tiny_config, stage3)
    assert torch.equal(before.local_encoder.trunk[0].weight, after.local_encoder.trunk[0].weight)  # f_L frozen
    assert not torch.equal(before.classifier.head[1].weight, after.classifier.head[1].weight)  # f_C trained
    evaluation = evaluate_run(tiny_config, stage3, policy, progress=False)
    rows = evaluation.results["policies"]
    assert set(rows) == {"learned", "random", "center", "oracle", "global_only", "full_frame"}
    assert rows["oracle"]["hit_rate"] == 1.0
    assert rows["learned"]["gflops_per_video"] > rows["random"]["gflops_per_video"]  # pi's own cost counted
    assert rows["global_only"]["gflops_per_video"] < rows["random"]["gflops_per_video"] < rows["full_frame"]["gflops_per_video"]


def test_stage2_logs_every_on_policy_update(tiny_config, tmp_path):
    """A2C logs once per 100 updates by default: stage II asks for every update, so its learning curve (the
    comparison's reward figure) has one row per update as PPO's has."""
    stage1 = run_supervised(tiny_config, "stage1", tmp_path, progress=False)
    config = replace(tiny_config, policy=replace(tiny_config.policy, algo="a2c"))
    run_policy(config, tmp_path, stage1, progress=False)
    policy = config.policy
    updates = policy.total_timesteps // (load_hyperparams("a2c")["n_steps"] * policy.n_envs)  # A2C's rollouts
    rows = (tmp_path / "policy" / "progress.csv").read_text().strip().splitlines()[1:]
    assert updates > 1 and len(rows) == updates


class _Killed(Exception):
    pass


def test_resume_after_a_kill_mid_epoch_ends_like_an_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    config = replace(tiny_config, stage1=replace(tiny_config.stage1, epochs=3))
    whole = run_supervised(config, "stage1", tmp_path / "whole", progress=False)

    calls = {"n": 0}
    original = torch.optim.SGD.step

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # 2 batches per epoch: the second epoch's first batch
            raise _Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", dying_step)
    with pytest.raises(_Killed):
        run_supervised(config, "stage1", tmp_path / "cut", progress=False)
    assert checkpoint.load(tmp_path / "cut" / "stage1" / "checkpoint.pt")["epoch"] == 0
    monkeypatch.setattr(torch.optim.SGD, "step", original)
    resumed = run_supervised(config, "stage1", tmp_path / "cut", progress=False)
    a, b = _metrics(whole), _metrics(resumed)
    assert a["epoch"] == b["epoch"] == 3
    for key in ("train_loss", "top1", "mAP"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    wa, wb = checkpoint.load(whole)["model"], checkpoint.load(resumed)["model"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], msg=name)


_STAGE1_SCRIPT = """
import json, sys
from pathlib import Path

import torch

torch.set_num_threads(1)  # as the in-process runs (conftest): the same arithmetic, the same weights
from adafocus.config import RunConfig, from_dict
from adafocus.pipeline import run_supervised

config = from_dict(RunConfig, json.loads(Path(sys.argv[1]).read_text()))
run_supervised(config, "stage1", Path(sys.argv[2]), progress=False)
"""


def test_resume_after_a_sigkill_ends_like_an_uninterrupted_run(tiny_config, tmp_path):
    import signal
    import time

    config = replace(tiny_config, stage1=replace(tiny_config.stage1, epochs=3))
    whole = run_supervised(config, "stage1", tmp_path / "whole", progress=False)  # also generates the data
    config_file, script = tmp_path / "config.json", tmp_path / "stage1.py"
    config_file.write_text(json.dumps(to_dict(config)))
    script.write_text(_STAGE1_SCRIPT)
    ckpt = tmp_path / "cut" / "stage1" / "checkpoint.pt"
    process = subprocess.Popen([sys.executable, str(script), str(config_file), str(tmp_path / "cut")],
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.is_file():  # checkpoints are renamed into place: one that exists is whole
            assert process.poll() is None, f"stage I died before its first checkpoint:\n{process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)  # no cleanup, no atexit: as the OOM killer or a lost node
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert checkpoint.load(ckpt)["epoch"] == 0  # killed during the second of 3 epochs
    resumed = run_supervised(config, "stage1", tmp_path / "cut", progress=False)
    a, b = checkpoint.load(whole), checkpoint.load(resumed)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("epoch", "train_loss", "top1", "mAP", "lr", "skipped"):
        assert a["metrics"][key] == b["metrics"][key], key
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_a_training_set_smaller_than_one_batch_is_refused(tiny_config, tmp_path):
    small = replace(tiny_config, stage1=replace(tiny_config.stage1, batch_size=64))  # 16 videos
    with pytest.raises(ValueError, match=r"train\.txt has 16 videos(.|\n)*64 over world size 1(.|\n)*"
                                         r"--stage1\.batch_size to at most 16"):
        run_supervised(small, "stage1", tmp_path, progress=False)
    assert not (tmp_path / "stage1" / "checkpoint.pt").exists()


def test_the_batch_check_counts_per_process_batches_and_names_an_unlisted_set():
    from torch.utils.data import TensorDataset

    from adafocus.training import _check_batch_fits

    videos = TensorDataset(torch.zeros(10, 1))
    _check_batch_fits(videos, 10, 1, "--stage1.batch_size")  # exactly one batch: fine
    _check_batch_fits(videos, 10, 2, "--stage1.batch_size")  # 5 per process, batches of 5
    with pytest.raises(ValueError, match=r"the training set has 10 videos, fewer than one batch of 6 per process "
                                         r"\(--stage3\.batch_size 12 over world size 2\)(.|\n)*at most 10"):
        _check_batch_fits(videos, 12, 2, "--stage3.batch_size")
    with pytest.raises(ValueError, match="fewer processes"):
        _check_batch_fits(TensorDataset(torch.zeros(1, 1)), 2, 2, "--stage1.batch_size")


def test_mismatched_corrupt_and_missing_checkpoints_fail_clearly(tiny_config, tmp_path):
    stage1 = run_supervised(replace(tiny_config, stage1=replace(tiny_config.stage1, epochs=1)), "stage1",
                            tmp_path, progress=False)
    other = replace(tiny_config, model=replace(tiny_config.model, patch_size=32, hidden_size=8))
    with pytest.raises(ValueError, match=r"another architecture(.|\n)*hidden_size(.|\n)*patch_size"):
        build_model(other, stage1)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(stage1.read_bytes()[:1000])
    with pytest.raises(ValueError, match="broken.pt"):
        build_model(tiny_config, broken)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        build_model(tiny_config, tmp_path / "nowhere.pt")
    # a checkpoint written before a model field existed: the field takes its default, which must fit the run
    state = checkpoint.load(stage1)
    for spec in ("global_encoder", "local_encoder"):
        del state["config"]["model"][spec]["shift"]
    older = tmp_path / "older.pt"
    checkpoint.save_atomic(state, older)
    assert build_model(tiny_config, older) is not None
    shifted = replace(tiny_config, model=replace(tiny_config.model, glance_frames=2,
                                                 local_encoder=replace(tiny_config.model.local_encoder, shift=0.125)))
    with pytest.raises(ValueError, match="local_encoder.shift"):
        build_model(shifted, older)


def test_atomic_save_keeps_the_previous_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pt"
    checkpoint.save_atomic({"x": torch.ones(2)}, target)

    def failing_save(obj, path):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"x": torch.zeros(2)}, target)
    assert torch.equal(checkpoint.load(target)["x"], torch.ones(2))


def test_config_roundtrip_and_command_line_overrides(tiny_config):
    from adafocus.cli import parse_config

    assert from_dict(RunConfig, to_dict(tiny_config)) == tiny_config
    config, _ = parse_config("", ["--preset", "activitynet", "--train-list", "a.txt", "--val-list", "b.txt",
                                  "--stage1.epochs", "3", "--patch", "96", "--env.reward", "prev"])
    assert (config.stage1.epochs, config.model.patch_size, config.env.reward) == (3, 96, "prev")
    flags, _ = parse_config("", ["--skip-corrupt", "--env.observe_memory", "false"])
    assert flags.data.skip_corrupt is True and flags.env.observe_memory is False
    assert config.stage1.lr_local == 5e-4 and config.stage3.lr_classifier == 5e-3  # the appendix's values
    mini, _ = parse_config("", ["--preset", "minikinetics", "--train-list", "a", "--val-list", "b"])
    assert mini.stage3.lr_classifier == 5e-4
    sth, _ = parse_config("", ["--preset", "sthsth", "--train-list", "a", "--val-list", "b"])
    assert (sth.stage1.epochs, sth.stage1.lr_local, sth.stage1.lr_classifier, sth.data.flip) == (10, 1e-5, 0.01, False)
    with pytest.raises(SystemExit):
        parse_config("", ["--preset", "activitynet"])  # real data needs lists


def test_distributed_stage1_on_two_cpu_processes(tiny_config, tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(to_dict(replace(tiny_config, stage1=replace(tiny_config.stage1, epochs=1)))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(ROOT / "experiments" / "train_stage1.py"), "--config", str(config_file),
                             "--out", str(tmp_path / "run"), "--no-progress", "--no-resume"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    path = tmp_path / "run" / "stage1" / "checkpoint.pt"
    model = build_model(tiny_config, path)  # the checkpoint loads into a plain model
    assert model.config == tiny_config.model
    assert result.stdout.count('"stage": "stage1"') == 1  # only rank 0 reports and writes
