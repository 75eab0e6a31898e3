"""Crash-safe stage II and reuse by command: a real SIGKILL resumes from the last checkpoint, a cut-short
policy is retrained, a stage trained by another command is refused, and ``--from`` starts from another run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adafocus import provenance
from adafocus.config import to_dict
from adafocus.callbacks import read_checkpoint_state
from adafocus.pipeline import main_job, run_policy
from adafocus.provenance import StageMismatch

from conftest import poison, tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny run through every stage: the folder and its config."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAFOCUS_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("mpl")))
        config = tiny_run_config()
        out = tmp_path_factory.mktemp("run")
        main_job(config, out, progress=False)
        yield config, out


def _stamps(run: Path) -> dict[str, float]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.glob("*/*") if p.is_file()}


def test_the_same_command_reuses_every_stage(finished):
    config, out = finished
    before = _stamps(out)
    main_job(config, out, progress=False)
    after = _stamps(out)
    trained = [name for name in ("warmup/checkpoint.pt", "stage1/checkpoint.pt", "policy/policy.zip",
                                 "stage3/checkpoint.pt") if after[name] != before[name]]
    assert trained == []
    assert provenance.stage_status(out / "policy", json.loads((out / "policy" / "stage.json").read_text())) == "finished"


@pytest.mark.parametrize("change, field, stage", [
    (lambda c: replace(c, policy=replace(c.policy, algo="a2c")), "policy.algo: 'ppo' -> 'a2c'", "policy"),
    (lambda c: replace(c, stage1=replace(c.stage1, lr_local=0.02)), "stage1.lr_local: 0.01 -> 0.02", "stage1"),
])
def test_a_changed_command_is_refused_naming_the_field_and_the_ways_out(finished, change, field, stage):
    config, out = finished
    described = (out / "config.json").read_text()
    before = _stamps(out)
    with pytest.raises(StageMismatch) as error:
        main_job(change(config), out, progress=False)
    message = str(error.value)
    assert field in message and str(out / stage) in message
    assert "--fresh" in message and f"--from {out}" in message
    assert (out / "config.json").read_text() == described  # config.json never describes another command
    assert _stamps(out) == before


def test_from_reuses_the_matching_upstream_stages_and_trains_the_rest(finished, tmp_path):
    config, out = finished
    a2c = replace(config, policy=replace(config.policy, algo="a2c"))
    new = tmp_path / "a2c"
    main_job(a2c, new, progress=False, start_from=out)
    for stage in ("warmup", "stage1"):  # copied, byte for byte
        assert (new / stage / "checkpoint.pt").read_bytes() == (out / stage / "checkpoint.pt").read_bytes()
    assert json.loads((new / "policy" / "policy.json").read_text())["policy"]["algo"] == "a2c"
    assert json.loads((new / "config.json").read_text())["policy"]["algo"] == "a2c"
    assert json.loads((out / "config.json").read_text())["policy"]["algo"] == "ppo"  # the source is untouched
    assert (new / "policy" / "policy.zip").read_bytes() != (out / "policy" / "policy.zip").read_bytes()


def test_a_cut_short_policy_is_retrained(finished, tmp_path, capsys):
    config, out = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    policy = run / "policy" / "policy.zip"
    policy.write_bytes(policy.read_bytes()[: policy.stat().st_size // 2])
    path = run_policy(config, run, run / "stage1" / "checkpoint.pt", progress=False)
    assert "training stage II again" in capsys.readouterr().out
    record = json.loads((run / "policy" / "stage.json").read_text())
    assert provenance.stage_status(run / "policy", record) == "finished"
    assert path.stat().st_size > policy.stat().st_size // 2 and path.read_bytes()[:2] == b"PK"


STAGE2 = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from adafocus.config import RunConfig, from_dict
from adafocus.pipeline import run_policy
config = from_dict(RunConfig, json.loads(Path(sys.argv[1]).read_text()))
run_policy(config, Path(sys.argv[2]), Path(sys.argv[2]) / "stage1" / "checkpoint.pt", progress=False)
print("finished")
"""


def test_stage2_resumes_after_a_sigkill_from_its_last_checkpoint(finished, tmp_path):
    config, out = finished
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(out / "warmup", run / "warmup")
    shutil.copytree(out / "stage1", run / "stage1")
    total = 1024  # 16 env steps an update: 64 updates, seconds past the first checkpoint
    long = replace(config, policy=replace(config.policy, total_timesteps=total, checkpoint_every=2))
    (tmp_path / "config.json").write_text(json.dumps(to_dict(long)))
    (tmp_path / "script.py").write_text(STAGE2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "config.json"), str(run)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = run / "policy" / "checkpoint.zip"
    deadline = time.time() + 120
    while read_checkpoint_state(ckpt) is None:
        assert process.poll() is None, process.communicate()[0]
        assert time.time() < deadline, "no stage II checkpoint within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = read_checkpoint_state(ckpt)["num_timesteps"]
    assert 0 < saved < total and not (run / "policy" / "policy.zip").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming stage II from step {saved:,} of {total:,}" in done.stdout
    meta = json.loads((run / "policy" / "stage.json").read_text())
    assert provenance.stage_status(run / "policy", meta) == "finished" and not ckpt.exists()
    from adafocus.agents import read_policy_file
    steps = read_policy_file(run / "policy" / "policy.zip")[2]["num_timesteps"]
    assert total <= steps < total + 16  # continued from the checkpoint, up to the stage's own total
    assert (run / "policy" / f"progress_until_{saved}.csv").is_file()


def test_evaluate_py_on_a_crafted_policy_runs_nothing_and_scores_as_the_run_did(finished, tmp_path):
    """A run folder from someone else: its policy.zip's pickled fields would write a file when unpickled.
    evaluate.py rebuilds pi from the run's JSON config and reads only its tensors: no file appears, and the
    learned policy scores exactly as in the run's own evaluation."""
    import runpy

    _, out = finished
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(out, run)
    poison(run / "policy" / "policy.zip", marker)
    script = runpy.run_path(str(ROOT / "experiments" / "evaluate.py"))
    script["main"](["--run", str(run), "--out", str(tmp_path / "evaluation"), "--device", "cpu", "--no-progress"])
    assert not marker.exists()
    now = json.loads((tmp_path / "evaluation" / "results.json").read_text())["policies"]["learned"]
    before = json.loads((out / "results.json").read_text())["policies"]["learned"]
    for key in ("top1", "mAP", "gflops_per_video", "hit_rate"):
        assert now[key] == pytest.approx(before[key], abs=1e-6), key


def test_frame_policies_load_from_their_json_settings_and_tensors_only(finished, tmp_path):
    """Stage II' on the run (pi' with a tiny budget), then its policy.zip crafted to write a file when
    unpickled: evaluating it again runs nothing and gives the same row."""
    from adafocus.frame_evaluation import evaluate_frame_policies, frame_job
    from adafocus.frame_training import FrameConfig

    _, out = finished
    settings = FrameConfig(n_envs=4, videos_per_update=4, total_timesteps=64, features_dim=16, conv_channels=4)
    first = frame_job(out, tmp_path / "frames", ["pi_prime"], settings, progress=False)["policies"]
    (policy,) = sorted((tmp_path / "frames").glob("*/policy.zip"))
    marker = tmp_path / "marker"
    poison(policy, marker)
    again = evaluate_frame_policies(out, [policy], progress=False)["policies"]
    assert not marker.exists()
    name = policy.parent.name
    for key in ("top1", "gflops_per_video", "mean_decisions"):
        assert again[name][key] == pytest.approx(first[name][key], abs=1e-6), key
