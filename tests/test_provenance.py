"""Stage provenance: finished stages are reused only by the command that trained them (no training here:
fake stage folders with a few bytes per file)."""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from adafocus import provenance
from adafocus.config import preset
from adafocus.provenance import (StageMismatch, adopt_stages, begin_stage, check_partial, file_digest,
                                 finish_stage, stage_record, stage_status)

OUTPUTS = {"warmup": ["checkpoint.pt"], "stage1": ["checkpoint.pt"], "tsm_plus": ["checkpoint.pt"],
           "policy": ["policy.zip", "policy.json"], "stage3": ["checkpoint.pt"]}
INPUTS = {"warmup": {}, "stage1": {"init": "warmup/checkpoint.pt"}, "tsm_plus": {"init": "warmup/checkpoint.pt"},
          "policy": {"init": "stage1/checkpoint.pt"},
          "stage3": {"init": "stage1/checkpoint.pt", "policy": "policy/policy.zip"}}


@pytest.fixture
def lists(tmp_path: Path) -> dict[str, Path | None]:
    data = tmp_path / "lists"
    data.mkdir()
    (data / "train.txt").write_text("a.mp4 0\nb.mp4 1\n")
    (data / "val.txt").write_text("c.mp4 0\n")
    return {"train_list": data / "train.txt", "val_list": data / "val.txt", "label_file": None}


def record(config, stage: str, run: Path, lists) -> dict:
    return stage_record(config, stage, lists, {k: run / v for k, v in INPUTS[stage].items()})


def train(config, stage: str, run: Path, lists, content: str = "weights") -> dict:
    """A fake finished stage: its output files, then stage.json."""
    folder = run / stage
    rec = record(config, stage, run, lists)  # before the outputs: upstream files only
    begin_stage(folder, rec)
    for name in OUTPUTS[stage]:
        (folder / name).write_text(f"{stage} {name} {content}")
    (folder / "log.csv").write_text("epoch,top1\n0,0.5\n")
    finish_stage(folder, rec, [folder / name for name in OUTPUTS[stage]])
    return rec


def train_run(config, run: Path, lists, stages=("warmup", "stage1", "policy", "stage3")) -> None:
    for stage in stages:
        train(config, stage, run, lists)


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (file_digest(p), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_record_fields_are_dotted_and_skip_ignored_fields(lists):
    config = preset("synthetic")
    fields = stage_record(config, "policy", lists, {})["fields"]
    assert fields["policy.algo"] == "ppo" and fields["env.grid"] == 7 and fields["seed"] == 0
    assert "model.global_encoder.arch" in fields and "data.synthetic.num_classes" in fields
    assert not any(k.startswith(("stage1.", "warmup.", "stage3.")) for k in fields)
    for ignored in ("data.workers", "data.cache_videos", "data.train_list", "device", "preset"):
        assert ignored not in fields
    assert "policy.algo" not in stage_record(config, "warmup", lists, {})["fields"]
    with pytest.raises(ValueError, match="unknown stage"):
        stage_record(config, "stage2", lists, {})


def test_matching_record_is_finished_and_no_marker_is_absent(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    for stage in ("warmup", "stage1", "policy", "stage3"):
        assert stage_status(run / stage, record(config, stage, run, lists)) == "finished"
        assert not (run / stage / "stage.partial.json").exists()
    saved = json.loads((run / "policy" / "stage.json").read_text())
    assert saved["outputs"] == {n: file_digest(run / "policy" / n) for n in ("policy.zip", "policy.json")}
    (run / "tsm_plus").mkdir()
    (run / "tsm_plus" / "checkpoint.pt").write_text("an interrupted stage")
    assert stage_status(run / "tsm_plus", record(config, "tsm_plus", run, lists)) == "absent"


@pytest.mark.parametrize("stage, change, field, old, new", [
    ("policy", lambda c: replace(c, policy=replace(c.policy, algo="a2c")), "policy.algo", "'ppo'", "'a2c'"),
    ("stage1", lambda c: replace(c, stage1=replace(c.stage1, lr_local=0.01)), "stage1.lr_local", "0.05", "0.01"),
    ("warmup", lambda c: replace(c, model=replace(c.model, patch_size=48)), "model.patch_size", "32", "48"),
])
def test_changed_field_is_refused_with_both_ways_out(tmp_path, lists, stage, change, field, old, new):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    with pytest.raises(StageMismatch) as caught:
        stage_status(run / stage, record(change(config), stage, run, lists))
    message = str(caught.value)
    assert f"{field}: {old} -> {new}" in message
    assert str(run / stage) in message and "--fresh" in message and f"--out NEW --from {run}" in message
    # another algorithm also brings its own file's values (policy.defaults.*)
    assert [d[0] for d in caught.value.differences if not d[0].startswith("policy.defaults.")] == [field]
    assert isinstance(caught.value, ValueError)
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_a_stage_ignores_other_stages_fields(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    changed = replace(config, stage3=replace(config.stage3, lr_classifier=1.0),
                      policy=replace(config.policy, algo="a2c"))
    assert stage_status(run / "stage1", record(changed, "stage1", run, lists)) == "finished"


def test_ignored_fields_do_not_refuse(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    changed = replace(config, device="cuda", data=replace(config.data, workers=8, cache_videos=False))
    for stage in ("warmup", "stage1", "policy", "stage3"):
        assert stage_status(run / stage, record(changed, stage, run, lists)) == "finished"


def test_truncated_or_missing_output_is_incomplete(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    (run / "policy" / "policy.json").unlink()
    assert stage_status(run / "policy", record(config, "policy", run, lists)) == "incomplete"
    ckpt = run / "stage1" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:5])
    assert stage_status(run / "stage1", record(config, "stage1", run, lists)) == "incomplete"
    (run / "warmup" / "stage.json").write_text('{"stage": "warm')  # not JSON: not a finished marker
    assert stage_status(run / "warmup", record(config, "warmup", run, lists)) == "incomplete"


def test_changed_data_list_is_refused(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    lists["train_list"].write_text("a.mp4 0\nb.mp4 2\n")
    with pytest.raises(StageMismatch, match=r"data\.train_list: sha256 [0-9a-f]{12} -> sha256 [0-9a-f]{12}"):
        stage_status(run / "warmup", record(config, "warmup", run, lists))
    lists["label_file"] = lists["val_list"]  # a list that was not there
    with pytest.raises(StageMismatch, match=r"data\.label_file: no file -> sha256"):
        stage_status(run / "stage1", record(config, "stage1", run, {**lists, "train_list": lists["train_list"]}))


def test_changed_input_checkpoint_is_refused(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists)
    (run / "stage1" / "checkpoint.pt").write_text("stage I, retrained")
    with pytest.raises(StageMismatch, match=r"inputs\.init: sha256 \w+ -> sha256 \w+") as caught:
        stage_status(run / "policy", record(config, "policy", run, lists))
    assert [d[0] for d in caught.value.differences] == ["inputs.init"]
    assert pickle.loads(pickle.dumps(caught.value)).differences == caught.value.differences
    with pytest.raises(StageMismatch, match=r"inputs\.init"):
        stage_status(run / "stage3", record(config, "stage3", run, lists))


def test_a_field_added_since_matches_only_at_its_default(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists, stages=("warmup",))
    marker = run / "warmup" / "stage.json"
    saved = json.loads(marker.read_text())
    del saved["fields"]["data.skip_corrupt"]  # as if written before the field existed
    marker.write_text(json.dumps(saved))
    assert stage_status(run / "warmup", record(config, "warmup", run, lists)) == "finished"
    skipping = replace(config, data=replace(config.data, skip_corrupt=True))
    with pytest.raises(StageMismatch, match=r"data\.skip_corrupt: \(absent\) -> True") as caught:
        stage_status(run / "warmup", record(skipping, "warmup", run, lists))
    assert pickle.loads(pickle.dumps(caught.value)).differences == caught.value.differences


def test_partial_stage_refuses_a_changed_command(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists, stages=("warmup",))
    folder = run / "stage1"
    assert check_partial(folder, record(config, "stage1", run, lists)) is False  # nothing recorded yet
    begin_stage(folder, record(config, "stage1", run, lists))
    (folder / "checkpoint.pt").write_text("epoch 3 of 24")
    assert stage_status(folder, record(config, "stage1", run, lists)) == "absent"
    assert check_partial(folder, record(config, "stage1", run, lists)) is True
    changed = replace(config, stage1=replace(config.stage1, epochs=30))
    with pytest.raises(StageMismatch, match=r"partly trained.*resumed(.|\n)*stage1\.epochs: 24 -> 30(.|\n)*--fresh"):
        check_partial(folder, record(changed, "stage1", run, lists))


def test_begin_stage_withdraws_the_finished_marker(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists, stages=("warmup",))
    rec = record(config, "warmup", run, lists)
    begin_stage(run / "warmup", rec)  # retraining, e.g. after "incomplete"
    assert stage_status(run / "warmup", rec) == "absent"


def test_finish_stage_is_atomic(tmp_path, lists, monkeypatch):
    config, run = preset("synthetic"), tmp_path / "run"
    train_run(config, run, lists, stages=("warmup",))
    marker = run / "warmup" / "stage.json"
    before = marker.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    changed = replace(config, warmup=replace(config.warmup, epochs=5))
    with pytest.raises(OSError, match="disk full"):
        finish_stage(run / "warmup", record(changed, "warmup", run, lists), [run / "warmup" / "checkpoint.pt"])
    assert marker.read_bytes() == before
    assert sorted(p.name for p in (run / "warmup").iterdir()) == ["checkpoint.pt", "log.csv", "stage.json"]
    monkeypatch.undo()
    assert stage_status(run / "warmup", record(config, "warmup", run, lists)) == "finished"


def test_finish_stage_rejects_outputs_outside_the_folder(tmp_path, lists):
    config, run = preset("synthetic"), tmp_path / "run"
    (run / "warmup").mkdir(parents=True)
    with pytest.raises(ValueError, match="not inside"):
        finish_stage(run / "warmup", record(config, "warmup", run, lists), [lists["train_list"]])


def test_adopt_stages_takes_matching_upstream_stages(tmp_path, lists):
    config, source, out = preset("synthetic"), tmp_path / "run", tmp_path / "new"
    train_run(config, source, lists)
    before = snapshot(source)
    changed = replace(config, stage3=replace(config.stage3, lr_classifier=1e-3))
    records = {s: record(changed, s, source, lists) for s in ("warmup", "stage1", "policy", "stage3")}
    assert adopt_stages(source, out, changed, records) == ["warmup", "stage1", "policy"]
    assert snapshot(source) == before
    assert not (out / "stage3").exists() and sorted(p.name for p in out.iterdir()) == ["policy", "stage1", "warmup"]
    for stage in ("warmup", "stage1", "policy"):  # records of the copies (inputs in OUT) still match
        assert stage_status(out / stage, record(changed, stage, out, lists)) == "finished"
        assert (out / stage / "log.csv").read_text() == (source / stage / "log.csv").read_text()
    # run again with the same command: idempotent
    assert adopt_stages(source, out, changed, records) == ["warmup", "stage1", "policy"]
    # OUT trains its stage III; a stage that OUT retrains is unshared from SOURCE before it writes
    begin_stage(out / "policy", records["policy"])
    with (out / "policy" / "log.csv").open("a") as f:
        f.write("1,0.9\n")
    (out / "policy" / "policy.json").write_text("retrained in place")
    assert snapshot(source) == before


def test_adopt_stages_stops_at_the_first_difference(tmp_path, lists):
    config, source = preset("synthetic"), tmp_path / "run"
    train_run(config, source, lists)
    before = snapshot(source)
    changed = replace(config, stage1=replace(config.stage1, lr_local=0.01))
    records = {s: record(changed, s, source, lists) for s in ("warmup", "stage1", "policy", "stage3")}
    assert adopt_stages(source, tmp_path / "a", changed, records) == ["warmup"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["warmup"]
    # an unfinished upstream stage stops its downstream stages too, although they match
    (source / "stage1" / "stage.json").unlink()
    records = {s: record(config, s, source, lists) for s in ("warmup", "stage1", "policy", "stage3")}
    assert adopt_stages(source, tmp_path / "b", config, records) == ["warmup"]
    before.pop("stage1/stage.json")
    assert snapshot(source) == before
    with pytest.raises(ValueError, match="itself"):
        adopt_stages(source, source, config, records)
    with pytest.raises(ValueError, match="not computed from this config"):
        adopt_stages(source, tmp_path / "c", changed,
                     {"warmup": record(replace(config, seed=1), "warmup", source, lists)})


def test_adopt_stages_includes_tsm_plus_when_recorded(tmp_path, lists):
    config, source = preset("synthetic_tsm"), tmp_path / "run"
    train_run(config, source, lists, stages=("warmup", "stage1", "tsm_plus", "policy"))
    records = {s: record(config, s, source, lists) for s in provenance.PIPELINE_ORDER}
    assert adopt_stages(source, tmp_path / "new", config, records) == ["warmup", "stage1", "tsm_plus", "policy"]


def test_outputs_named_relative_to_the_working_directory(tmp_path, lists, monkeypatch):
    """A run folder given as a relative --out: outputs are named as the pipeline names them, from the cwd."""
    monkeypatch.chdir(tmp_path)
    config, folder = preset("synthetic"), Path("runs") / "synthetic" / "warmup"
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_text("weights")
    entry = record(config, "warmup", Path("runs/synthetic"), lists)
    provenance.finish_stage(folder, entry, [folder / "checkpoint.pt", Path("checkpoint.pt")])
    assert json.loads((folder / "stage.json").read_text())["outputs"] == {"checkpoint.pt": file_digest(folder / "checkpoint.pt")}
    assert stage_status(folder, entry) == "finished"
