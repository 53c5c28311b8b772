"""One item failing does not fail the others; bad models and devices stop before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import png_with_corrupt_pixels, run_cli, summary_items, tiny_manifest, write_manifest

from rr_controlnet.models import loading


def run(manifest: Path, out: Path, *args: str):
    return run_cli("batch", manifest, "--out", out, *args, exit_code=None)


def test_a_corrupt_image_fails_its_item_and_the_others_complete(tmp_path: Path) -> None:
    manifest = tiny_manifest(
        tmp_path, items=[{"image": "astronaut.png"}, {"image": "broken.png"}, {"image": "horse.png"}]
    )
    (tmp_path / "broken.png").write_bytes(png_with_corrupt_pixels(tmp_path / "astronaut.png"))
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 1, result.output
    items = summary_items(tmp_path / "out")
    assert {key: value["status"] for key, value in items.items()} == {
        "astronaut": "done",
        "broken": "failed",
        "horse": "done",
    }
    assert items["broken"]["error"].startswith("cannot decode image")
    assert "\n" not in items["broken"]["error"]
    assert "item 'broken': failed: cannot decode image" in result.output
    assert not (tmp_path / "out" / "broken.rrd").exists() and not (tmp_path / "out" / "broken.png").exists()
    assert (tmp_path / "out" / "horse.rrd").exists()


@pytest.fixture
def sabotaged_pipeline(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Make the pipeline misbehave for items whose prompt names a fault: NAN, OOM or CRASH."""
    calls = {"empty_cache": 0}
    real_load_model = loading.load_model

    def load_model(*args, **kwargs):
        model = real_load_model(*args, **kwargs)
        real_call = model.pipe.__call__

        class Sabotaged(type(model.pipe)):
            def __call__(self, *call_args, **call_kwargs):
                prompts = " ".join(call_kwargs["prompt"])
                if "OOM" in prompts:
                    raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore details")
                if "CRASH" in prompts:
                    raise ValueError("something inside the pipeline broke")
                output = real_call(*call_args, **call_kwargs)
                if "NAN" in prompts:
                    output.images[:] = np.nan
                return output

        model.pipe.__class__ = Sabotaged
        return model

    monkeypatch.setattr(loading, "load_model", load_model)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("gc.collect", lambda: calls.__setitem__("empty_cache", calls["empty_cache"] + 1) or 0)
    return calls


def test_failures_inside_generation_are_recorded_and_the_batch_goes_on(
    tmp_path: Path, sabotaged_pipeline: dict
) -> None:
    manifest = tiny_manifest(
        tmp_path,
        items=[
            {"id": "nan", "image": "astronaut.png", "prompt": "NAN"},
            {"id": "oom", "image": "astronaut.png", "prompt": "OOM"},
            {"id": "crash", "image": "horse.png", "prompt": "CRASH"},
            {"id": "fine", "image": "horse.png"},
        ],
    )
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 1, result.output
    items = summary_items(tmp_path / "out")
    assert [items[key]["status"] for key in ("nan", "oom", "crash", "fine")] == ["failed"] * 3 + ["done"]
    assert items["nan"]["error"] == "the output has NaN or infinite values (try --dtype fp32 or bf16)"
    assert items["oom"]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert items["crash"]["error"] == "ValueError: something inside the pipeline broke"
    assert sabotaged_pipeline["empty_cache"] == 1  # memory is released after the out-of-memory error only
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "batch.rbl",
        "fine.png",
        "fine.rrd",
        "index.html",
        "overview.png",
        "review",
        "summary.json",
        "summary.md",
    ]


def manifest_of_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A manifest naming hub weights that are in no cache here (HF_HOME is empty)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    (tmp_path / "a.png").write_bytes((Path(__file__).parent.parent / "manifests/images/horse.png").read_bytes())
    return write_manifest(
        tmp_path,
        {
            "version": 1,
            "model": {"base": "someone/not-downloaded", "controlnet": "someone/controlnet", "family": "sd15"},
            "items": [{"image": "a.png"}],
        },
    )


def test_missing_weights_offline_name_the_model_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = manifest_of_missing_weights(tmp_path, monkeypatch)
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(
        "error: not available on this machine (offline): "
        "model.base 'someone/not-downloaded', model.controlnet 'someone/controlnet'. "
        "On a connected machine run `hf download someone/not-downloaded` and `hf download someone/controlnet`"
    )
    assert "HF_HOME" in message and "local diffusers folders" in message
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing was written: an earlier run's results stay as they were


def test_missing_weights_offline_name_the_control_units_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    (tmp_path / "a.png").write_bytes((Path(__file__).parent.parent / "manifests/images/horse.png").read_bytes())
    (tmp_path / "depth.png").write_bytes((tmp_path / "a.png").read_bytes())
    units = [{"type": "canny"}, {"type": "depth", "image": "depth.png"}]
    manifest = write_manifest(
        tmp_path, {"version": 1, "model": "sd15", "items": [{"image": "a.png", "controls": units}]}
    )
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert "depth unit 'lllyasviel/control_v11f1p_sd15_depth'" in message  # beside the base and its ControlNet
    fetches = "`rr-controlnet fetch sd15` and `hf download lllyasviel/control_v11f1p_sd15_depth`"
    assert f"On a connected machine run {fetches}" in message  # `fetch sd15` alone gets no unit
    assert not (tmp_path / "out").exists()


def test_missing_weights_without_the_hub_in_reach_are_named_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: the connection is refused
    manifest = manifest_of_missing_weights(tmp_path, monkeypatch)
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: not available on this machine (http://127.0.0.1:9 cannot be reached: ")
    assert "model.base 'someone/not-downloaded', model.controlnet 'someone/controlnet'." in message


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_checkpoints_are_refused_without_the_flag(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"model{suffix}").write_bytes(b"not really a checkpoint")
    (tmp_path / "a.png").write_bytes((Path(__file__).parent.parent / "manifests/images/horse.png").read_bytes())
    manifest = write_manifest(
        tmp_path,
        {
            "version": 1,
            "model": {"base": f"./model{suffix}", "controlnet": f"./model{suffix}", "family": "sd15"},
            "items": [{"image": "a.png"}],
        },
    )
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 2
    assert f"model{suffix} is a pickle-based checkpoint, which can run arbitrary code" in result.output
    assert "--allow-unsafe-weights" in result.output


def test_asking_for_cuda_without_it_suggests_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    manifest = tiny_manifest(tmp_path)
    result = run(manifest, tmp_path / "out", "--device", "cuda")
    assert result.exit_code == 2
    assert "error: --device cuda: CUDA is not available on this machine; use --device cpu" in result.output


def test_outputs_never_follow_symlinks_out_of_the_output_folder(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    for name in ("astronaut.png", "astronaut.rrd", "summary.json", "batch.rbl"):
        (out / name).symlink_to(outside)
    result = run(manifest, out)
    assert result.exit_code == 0, result.output
    assert outside.read_text() == "keep me"
    for name in ("astronaut.png", "astronaut.rrd", "summary.json", "batch.rbl"):
        assert not (out / name).is_symlink()


def test_any_failure_while_preparing_an_item_fails_that_item_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rr_controlnet import images

    real_canny = images.canny_edges

    def canny_edges(rgb, low, high):
        if low == 11:  # the item below: OpenCV running out of memory on it
            raise MemoryError("cv::OutOfMemoryError: failed to allocate 4294967296 bytes")
        return real_canny(rgb, low, high)

    monkeypatch.setattr(images, "canny_edges", canny_edges)
    manifest = tiny_manifest(
        tmp_path, items=[{"image": "astronaut.png", "canny": {"low": 11, "high": 99}}, {"image": "horse.png"}]
    )
    result = run(manifest, tmp_path / "out")
    assert result.exit_code == 1, result.output
    items = summary_items(tmp_path / "out")
    assert items["astronaut"]["status"] == "failed" and items["horse"]["status"] == "done"
    assert items["astronaut"]["error"] == "MemoryError: cv::OutOfMemoryError: failed to allocate 4294967296 bytes"


def test_checking_a_recording_leaves_other_threads_warnings_alone(tmp_path: Path) -> None:
    """Files are verified on the finisher thread while the next item generates; a warning the pipeline
    gives meanwhile (diffusers' Euler scheduler gives one under numpy 2) must stay a warning."""
    import threading
    import warnings

    import rerun as rr

    from rr_controlnet.recording.write import rrd_problem

    stream = rr.RecordingStream("rr_controlnet_test", send_properties=False)
    binary = stream.binary_stream()
    stream.log("points", rr.Points2D([[0, 0], [1, 1]]))
    stream.flush()
    path = tmp_path / "small.rrd"
    path.write_bytes(binary.read(flush=True))
    reading = threading.Thread(target=lambda: [rrd_problem(path) for _ in range(300)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reading.start()
        warned = 0
        while reading.is_alive():
            warnings.warn("an advisory from the pipeline", DeprecationWarning, stacklevel=1)
            warned += 1
        reading.join()
    assert warned > 0
    assert rrd_problem(path) is None
    path.write_bytes(path.read_bytes()[:-40])  # the footer cut off
    assert rrd_problem(path) is not None


def test_an_unexpected_error_exits_70_and_says_where_its_traceback_is(tmp_path: Path) -> None:
    """A bug is not a failed item (1) nor a usage error (2): its own code, one line, the traceback kept."""
    manifest = tiny_manifest(tmp_path)
    crash = (
        "import sys\n"
        "from rr_controlnet import api\n"
        "def validate_manifest(*args, **kwargs):\n"
        "    raise RuntimeError('a bug in validation')\n"
        "api.validate_manifest = validate_manifest\n"
        "from rr_controlnet.cli import main\n"
        f"sys.argv = ['rr-controlnet', 'validate', {str(manifest)!r}]\n"
        "main()\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "RR_CONTROLNET_DEBUG"}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", crash], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 70, result.stderr
    (line,) = result.stderr.strip().splitlines()
    (traceback_file,) = tmp_path.glob("rr-controlnet-error-*.txt")
    assert line == (
        f"error: internal error, RuntimeError: a bug in validation (a bug: its traceback is in {traceback_file}; "
        "please report it, or set RR_CONTROLNET_DEBUG=1 to see it here)"
    )
    kept = traceback_file.read_text()
    assert "Traceback (most recent call last)" in kept and "RuntimeError: a bug in validation" in kept
    assert f"rr-controlnet validate {manifest}" in kept.splitlines()[0]


def test_commands_suggested_on_the_terminal_are_shell_quoted(tmp_path: Path) -> None:
    out = tmp_path / "my out"
    result = run_cli("batch", tiny_manifest(tmp_path), "--out", out, "--steps", "1")
    assert f"(open with: rr-controlnet view '{out}')" in result.output
