"""The algorithm comparison (one shared base, runs per algorithm and seed, reuse, table and figures) and the
per-algorithm defaults in agents/hyperparams/ (RL Zoo's format, read by make_algorithm under PolicyConfig)."""
from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3.common.noise import VectorizedActionNoise

import adafocus.comparison as comparison
import adafocus.pipeline as pipeline
from adafocus.agents import ALGORITHMS, GlanceExtractor, action_kind, make_algorithm, resolve_algorithm
from adafocus.agents.registry import policy_name
from adafocus.agents.defaults import (ENV_ID, HYPERPARAMS, ZOO_ONLY, governed, hyperparams_file,
                                      load_hyperparams, parse_policy_kwargs, recorded_defaults)
from adafocus.agents.frames import FrameExtractor
from adafocus.comparison import (compare, exit_auc, first_step_top1, mean_curve, mean_std, print_comparison,
                                 run_config, run_folder)
from adafocus.config import PolicyConfig, preset
from adafocus.envs import AdaFocusVecEnv, EnvConfig, FocusEpisodes
from adafocus.provenance import file_digest, stage_fields
from conftest import tiny_run_config

ALGOS, SEEDS = ["ppo", "sac"], [0, 1]
STAGES = ("warmup", "stage1", "policy", "stage3")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The comparison over 2 algorithms x 2 seeds on the tiny run, with every supervised stage's training
    counted; then the same command again, with main_job forbidden, counting again."""
    out = tmp_path_factory.mktemp("compare")
    config = tiny_run_config()
    config = replace(config, stage3=replace(config.stage3, epochs=1), policy=replace(config.policy, total_timesteps=32))
    trained: list[str] = []
    train_stage = pipeline.train_stage

    def counting(*args, **kwargs):
        trained.append(kwargs["name"])
        return train_stage(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "train_stage", counting)
        first = compare(config, ALGOS, SEEDS, out, progress=False)
        first_trained = list(trained)
        runs = [out / "base", *(out / algo for algo in ALGOS)]  # the comparison's own files are written anew
        times = {p: p.stat().st_mtime_ns for run in runs for p in run.rglob("*") if p.is_file()}
        trained.clear()

        def forbidden(*args, **kwargs):
            raise AssertionError("a finished run folder was trained again")

        patch.setattr(comparison, "main_job", forbidden)
        second = compare(config, ALGOS, SEEDS, out, progress=False)
    return {"out": out, "config": config, "first": first, "second": second, "trained": first_trained,
            "retrained": list(trained), "times": times}


def test_layout_and_one_shared_base(compared):
    out = compared["out"]
    assert sorted(p.name for p in (out / "base").iterdir() if p.is_dir()) == ["stage1", "warmup"]
    assert (out / "base" / "config.json").is_file()
    for algo in ALGOS:
        for seed in SEEDS:
            folder = out / algo / f"seed{seed}"
            assert folder == run_folder(out, algo, seed)
            assert (folder / "results.json").is_file()
            for stage in STAGES:
                assert (folder / stage / "stage.json").is_file()
            for stage in ("warmup", "stage1"):  # the base's files, hard-linked in: trained once
                run_file, base_file = folder / stage / "checkpoint.pt", out / "base" / stage / "checkpoint.pt"
                assert file_digest(run_file) == file_digest(base_file)
                assert run_file.stat().st_ino == base_file.stat().st_ino
            saved = json.loads((folder / "config.json").read_text())
            assert saved["policy"]["algo"] == algo and saved["policy"]["seed"] == seed
            assert saved["env"]["action"] == action_kind(algo)
    # warm-up and stage I trained once, stage III once per run
    runs = len(ALGOS) * len(SEEDS)
    assert sorted(compared["trained"]) == sorted(["warmup", "stage1"] + ["stage3"] * runs)


def test_stage2_records_its_wall_time_and_steps(compared):
    record = json.loads((compared["out"] / "ppo" / "seed0" / "policy" / "stage.json").read_text())
    assert record["wall_seconds"] > 0
    assert record["timesteps"] >= compared["config"].policy.total_timesteps


def test_results_hold_per_seed_values_and_their_mean_and_std(compared):
    out = compared["out"]
    results = json.loads((out / "results.json").read_text())
    assert results == json.loads(json.dumps(compared["first"].results))
    assert list(results["algorithms"]) == ALGOS and results["seeds"] == SEEDS
    assert results["algorithms"]["ppo"]["action"] == "grid" and results["algorithms"]["sac"]["action"] == "continuous"
    for algo in ALGOS:
        entry = results["algorithms"][algo]
        assert set(entry["metrics"]) == set(comparison.METRICS)
        policies = [json.loads((out / algo / f"seed{s}" / "results.json").read_text())["policies"] for s in SEEDS]
        learned = [p["learned"] for p in policies]
        records = [json.loads((out / algo / f"seed{s}" / "policy" / "stage.json").read_text()) for s in SEEDS]
        expected = {"top1": [r["top1"] for r in learned], "mAP": [r["mAP"] for r in learned],
                    "hit_rate": [r["hit_rate"] for r in learned],
                    "gflops_per_video": [r["gflops_per_video"] for r in learned],
                    "exit_auc": [exit_auc(r["curve"]) for r in learned],
                    "first_step_top1": [first_step_top1(r["curve"]) for r in learned],
                    "random_top1": [p["random"]["top1"] for p in policies],
                    "env_steps": [r["timesteps"] for r in records], "stage2_seconds": [r["wall_seconds"] for r in records]}
        for metric, values in expected.items():
            got = entry["metrics"][metric]
            assert got["values"] == pytest.approx(values)
            assert got["mean"] == pytest.approx(np.mean(values))
            assert got["std"] == pytest.approx(np.std(values, ddof=1))
        assert len(entry["curve"]) == len(learned[0]["curve"])


def test_a_rerun_reuses_every_finished_folder(compared):
    assert compared["retrained"] == []
    for path, mtime in compared["times"].items():
        assert path.stat().st_mtime_ns == mtime, path
    assert compared["second"].results == compared["first"].results


def test_both_figures_and_the_table(compared, capsys):
    out, written = compared["out"], compared["first"].written
    for name in ("reward_vs_steps", "accuracy_vs_gflops"):
        for suffix in (".png", ".svg"):
            path = out / "plots" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000
    assert written["learning"] and written["budget"]
    print_comparison(compared["first"].results, written, "tiny")
    shown = capsys.readouterr().out
    assert "ppo" in shown and "sac" in shown and "±" in shown and "exit AUC" in shown


def test_a_changed_command_is_refused_not_reused(compared):
    config = replace(compared["config"], policy=replace(compared["config"].policy, total_timesteps=48))
    with pytest.raises(ValueError, match="different command"):
        compare(config, ["ppo"], [0], compared["out"], progress=False)


# ---- the measures --------------------------------------------------------------------------------------
def test_exit_auc_and_first_step():
    curve = [{"threshold": 0.0, "gflops_per_video": 1.0, "top1": 0.5},
             {"threshold": 0.5, "gflops_per_video": 2.0, "top1": 0.7},
             {"threshold": 1.0, "gflops_per_video": 3.0, "top1": 0.9}]
    assert exit_auc(curve) == pytest.approx(((0.5 + 0.7) / 2 + (0.7 + 0.9) / 2) / 2)
    assert exit_auc([{"threshold": 0.0, "gflops_per_video": 1.0, "top1": 0.4}]) == pytest.approx(0.4)
    assert first_step_top1(curve) == 0.5 and exit_auc([]) is None
    averaged = mean_curve([curve, [dict(p, top1=p["top1"] - 0.1) for p in curve]])
    assert [p["top1"] for p in averaged] == pytest.approx([0.45, 0.65, 0.85])


def test_mean_std():
    assert mean_std([1.0, 2.0, 4.0]) == {"mean": pytest.approx(7 / 3), "std": pytest.approx(np.std([1, 2, 4], ddof=1)),
                                         "values": [1.0, 2.0, 4.0]}
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "values": [0.5]}
    assert mean_std([None, None])["mean"] is None


def test_run_config_picks_actions_and_refuses_what_cannot_work():
    config = tiny_run_config()
    assert run_config(config, "sac", 3).env.action == "continuous" and run_config(config, "sac", 3).policy.seed == 3
    assert run_config(config, "ppo", 0).env.action == "grid"
    continuous = replace(config, env=replace(config.env, action="continuous"))
    with pytest.raises(ValueError, match="discrete"):
        run_config(continuous, "dqn", 0)
    with pytest.raises(ValueError, match="unknown algorithm"):
        compare(config, ["nope"], [0], Path("unused"), progress=False)


# ---- agents/hyperparams/ -------------------------------------------------------------------------------
def test_every_builtin_algorithm_has_a_file_in_rl_zoo_format():
    assert sorted(p.stem for p in HYPERPARAMS.glob("*.yml")) == sorted(ALGORITHMS)
    for algo in ALGORITHMS:
        text = hyperparams_file(algo).read_text()
        entry = yaml.safe_load(text)[ENV_ID]  # RL Zoo reads a -conf file by env id
        cls = resolve_algorithm(algo)
        assert entry["policy"] == policy_name(cls)
        assert isinstance(entry["n_timesteps"], int) and entry["n_envs"] == preset("synthetic").policy.n_envs
        assert entry["env_kwargs"].get("action", "grid") == action_kind(algo)
        # RL Zoo evaluates policy_kwargs in its own module, where torch is th and torch.nn is nn
        kwargs = eval(entry["policy_kwargs"], {"th": torch, "nn": torch.nn})
        assert kwargs["features_extractor_class"] is GlanceExtractor
        for line in text.splitlines():  # every value carries its reason
            if line.startswith("  ") and ":" in line and not line.strip().startswith("#"):
                assert "#" in line or line.strip().startswith("policy_kwargs"), line
        if algo in ("ppo", "a2c", "recurrent_ppo", "dqn", "qrdqn"):  # the frame policies' entry, one for their ids
            frames = [yaml.safe_load(text)[env_id] for env_id in ("AdaFrame-v0", "AdaFocusPlus-v0", "MultiAgent-v0")]
            assert frames[0] == frames[1] == frames[2] and frames[0]["policy"] == policy_name(cls)
            kwargs = eval(frames[0]["policy_kwargs"], {"th": torch, "nn": torch.nn})
            assert kwargs["features_extractor_class"] is FrameExtractor


def test_the_files_copy_the_synthetic_preset_where_policyconfig_rules():
    """The arguments PolicyConfig sets are RL Zoo's copies of the synthetic preset (AdaFocus-v0): built from
    the preset on a VecEnv of the file's n_envs, each algorithm gets exactly the file's values."""
    config = preset("synthetic")
    frames = config.data.frames
    for algo in ALGORITHMS:
        entry, cls = load_hyperparams(algo), resolve_algorithm(algo)
        policy = replace(config.policy, algo=algo)
        expected = {"learning_rate": policy.learning_rate, "gamma": policy.gamma}
        if "ent_coef" in governed(cls):  # on-policy
            expected.update(gae_lambda=policy.gae_lambda, ent_coef=policy.ent_coef, vf_coef=policy.vf_coef)
        if "n_epochs" in governed(cls):  # the PPO family: whole videos per update
            n_steps = policy.videos_per_update * frames // entry["n_envs"]
            expected.update(n_steps=n_steps, batch_size=n_steps * entry["n_envs"] // policy.minibatches,
                            n_epochs=policy.n_epochs, clip_range=policy.clip_range)
        assert {k: entry[k] for k in governed(cls)} == expected, algo
        extractor = ast.parse(entry["policy_kwargs"], mode="eval").body
        widths = next(k.value for k in extractor.keywords if k.arg == "features_extractor_kwargs")
        assert {k.arg: k.value.value for k in widths.keywords} == {
            "features_dim": policy.features_dim, "conv_channels": policy.conv_channels, "glance_norm": policy.glance_norm}


def build(algo: str, tiny_model, tiny_clips, policy: PolicyConfig, n: int = 4):
    episodes = FocusEpisodes(tiny_model, tiny_clips, EnvConfig(action=action_kind(algo)))
    return make_algorithm(algo, AdaFocusVecEnv(episodes, n, seed=0), policy, tiny_clips.num_frames, device="cpu")


def test_make_algorithm_applies_the_file_under_policyconfig(tiny_model, tiny_clips):
    dqn = load_hyperparams("dqn")
    policy = PolicyConfig(algo="dqn", n_envs=4, features_dim=16, learning_rate=5e-4, gamma=0.5)
    model = build("dqn", tiny_model, tiny_clips, policy)
    assert model.learning_starts == dqn["learning_starts"] and model.batch_size == dqn["batch_size"]
    assert model.buffer_size == dqn["buffer_size"] and model.exploration_fraction == dqn["exploration_fraction"]
    assert model.train_freq.frequency == 1 and model.gradient_steps == dqn["gradient_steps"]
    # PolicyConfig's values win over the file's copies of them ...
    assert model.learning_rate == 5e-4 != dqn["learning_rate"] and model.gamma == 0.5
    assert model.q_net.features_extractor.features_dim == 16
    # ... and --policy.hyperparams over the file
    model = build("dqn", tiny_model, tiny_clips, replace(policy, hyperparams="{learning_starts: 7, batch_size: 8}"))
    assert model.learning_starts == 7 and model.batch_size == 8 and model.buffer_size == dqn["buffer_size"]
    with pytest.raises(ValueError, match="--policy.learning_rate"):
        build("dqn", tiny_model, tiny_clips, replace(policy, hyperparams="{learning_rate: 0.1}"))
    with pytest.raises(ValueError, match="not an argument of DQN"):
        build("dqn", tiny_model, tiny_clips, replace(policy, hyperparams="{n_epochs: 3}"))


def test_off_policy_continuous_settings(tiny_model, tiny_clips):
    sac = build("sac", tiny_model, tiny_clips, PolicyConfig(algo="sac", features_dim=16))
    file = load_hyperparams("sac")
    assert sac.gradient_steps == file["gradient_steps"] and sac.learning_starts == file["learning_starts"]
    assert sac.ent_coef == file["ent_coef"] and float(sac.log_ent_coef.detach().exp()) == pytest.approx(0.1)
    td3 = build("td3", tiny_model, tiny_clips, PolicyConfig(algo="td3", features_dim=16))
    assert isinstance(td3.action_noise, VectorizedActionNoise) and td3.action_noise.n_envs == 4
    assert td3.action_noise.base_noise._sigma == pytest.approx([load_hyperparams("td3")["noise_std"]] * 2)


def test_on_policy_algorithms_take_policyconfig_and_the_project_heads(tiny_model, tiny_clips):
    policy = PolicyConfig(algo="paper_ppo", n_envs=4, videos_per_update=4, features_dim=16, n_epochs=1, minibatches=2)
    paper = build("paper_ppo", tiny_model, tiny_clips, policy)  # PPO's arguments reach PaperPPO's **kwargs
    assert paper.n_epochs == 1 and paper.batch_size == paper.n_steps * 4 // 2
    ppo = build("ppo", tiny_model, tiny_clips, replace(policy, algo="ppo"))
    assert ppo.policy.net_arch == [] or ppo.policy.net_arch == {"pi": [], "vf": []}


def test_stage2_records_the_values_the_file_changes():
    config = preset("synthetic")
    fields = stage_fields(replace(config, policy=replace(config.policy, algo="dqn")), "policy")
    assert fields["policy.defaults.learning_starts"] == load_hyperparams("dqn")["learning_starts"]
    assert recorded_defaults("ppo") == {}  # on-policy files only copy PolicyConfig: old PPO records still match
    assert not any(k.startswith("policy.defaults") for k in stage_fields(config, "policy"))
    assert recorded_defaults("stable_baselines3:PPO") == {}
    assert all(k.split(".")[-1] not in ZOO_ONLY for k in recorded_defaults("sac"))


def test_policy_kwargs_are_read_without_running_code():
    text = "dict(features_extractor_class=__import__('os').system('false'), net_arch=[64, 64], n_quantiles=50)"
    assert parse_policy_kwargs(text) == {"net_arch": [64, 64], "n_quantiles": 50}  # the extractor is PolicyConfig's
    with pytest.raises(ValueError, match="only literal"):
        parse_policy_kwargs("dict(activation_fn=nn.Tanh)")
    assert parse_policy_kwargs({"net_arch": [8], "lstm_hidden_size": 4}) == {"net_arch": [8]}


def test_a_class_path_has_no_file_and_takes_sb3_defaults(tiny_model, tiny_clips):
    assert hyperparams_file("stable_baselines3:DQN") is None and load_hyperparams("stable_baselines3:DQN") == {}
    model = build("stable_baselines3:DQN", tiny_model, tiny_clips, PolicyConfig(algo="stable_baselines3:DQN", features_dim=16))
    assert model.learning_starts == 100 and model.buffer_size == 1_000_000  # SB3's own defaults
