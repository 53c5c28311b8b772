"""The Python API on its own: load a manifest, run a batch, hear its progress, stop it, record items directly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import tiny_manifest

from rr_controlnet.api import (
    BatchOptions,
    Overrides,
    RecordingOptions,
    StopRequest,
    generate_and_record,
    load_manifest,
    plan_items,
    run_manifest,
)
from rr_controlnet.errors import ManifestError, UsageError


class RecordedProgress:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, total: int) -> None:
        self.events.append(("start", total))

    def start_item(self, label: str, steps: int) -> None:
        self.events.append(("item", label, steps))

    def step(self) -> None:
        self.events.append(("step",))

    def finish_items(self, count: int) -> None:
        self.events.append(("finished", count))

    def close(self) -> None:
        self.events.append(("close",))


def test_a_batch_runs_from_python_with_progress_and_log(tmp_path: Path) -> None:
    manifest = load_manifest(tiny_manifest(tmp_path, model="sdxl"), Overrides(model="tiny-sd15", steps=2))
    assert manifest.model.name == "tiny-sd15" and {item.params.steps for item in manifest.items} == {2}
    progress, messages = RecordedProgress(), []
    report = run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out"), progress=progress, log=messages.append)
    assert report.summary.counts() == {"done": 2, "failed": 0, "pending": 0}
    assert (tmp_path / "out" / "horse.rrd").is_file() and (tmp_path / "out" / "horse.png").is_file()
    assert progress.events[0] == ("start", 2) and progress.events[-1] == ("close",)
    assert progress.events.count(("step",)) == 4 and ("item", "astronaut", 2) in progress.events
    assert any("random weights" in message for message in messages)

    again = run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out"))
    assert again.skipped == ["astronaut", "horse"]


def test_a_stop_request_leaves_the_items_pending(tmp_path: Path) -> None:
    manifest = load_manifest(tiny_manifest(tmp_path))
    report = run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out"), stop=StopRequest(signal_name="SIGINT"))
    assert report.stopped_by == "SIGINT"
    assert report.summary.counts() == {"done": 0, "failed": 0, "pending": 2}


def test_a_forced_run_stopped_before_it_remade_anything_keeps_the_items_done(tmp_path: Path) -> None:
    manifest = load_manifest(tiny_manifest(tmp_path))
    run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out"))
    forced = BatchOptions(out_dir=tmp_path / "out", force=True)
    report = run_manifest(manifest, forced, stop=StopRequest(signal_name="SIGINT"))
    assert report.stopped_by == "SIGINT"
    assert report.summary.counts() == {"done": 2, "failed": 0, "pending": 0}  # their files are intact
    assert run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out")).skipped == ["astronaut", "horse"]


def test_errors_are_exceptions_with_every_problem(tmp_path: Path) -> None:
    path = tiny_manifest(tmp_path, items=[{"image": "horse.png", "steps": 0, "seed": -1}])
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    assert [problem.message for problem in raised.value.problems] == [
        "steps must be an integer 1..1000, got 0",
        "seed must be an integer 0..9223372036854775807, got -1",
    ]
    manifest = load_manifest(tiny_manifest(tmp_path))
    with pytest.raises(UsageError):
        run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out", recording=RecordingOptions(save=False)))


def test_thread_count_is_set_for_the_batch_only(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    manifest = load_manifest(tiny_manifest(tmp_path, items=[{"image": "horse.png"}]))
    run_manifest(manifest, BatchOptions(out_dir=tmp_path / "out", threads=1))
    assert torch.get_num_threads() == before


def test_generate_and_record_writes_complete_items_with_a_loaded_model(tmp_path: Path) -> None:
    from rr_controlnet.models.loading import load_model, resolve_runtime

    manifest = load_manifest(tiny_manifest(tmp_path))
    runtime = resolve_runtime("cpu")
    model = load_model(manifest.model, runtime)
    planned = plan_items(manifest, runtime.dtype_name)
    outcomes = generate_and_record(model, planned, tmp_path / "out", "my-recording", RecordingOptions(preview="none"))
    assert [(outcome.id, outcome.status) for outcome in outcomes] == [("astronaut", "done"), ("horse", "done")]
    assert outcomes[0].checksums["astronaut.rrd"]["bytes"] == (tmp_path / "out" / "astronaut.rrd").stat().st_size
    assert not (tmp_path / "out" / "summary.json").exists()  # no folder bookkeeping


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "manifests").symlink_to(root / "manifests")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    summary = json.loads((tmp_path / "api-output" / "summary.json").read_text())
    assert {item["status"] for item in summary["items"]} == {"done"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Overrides(steps=0), "Overrides.steps must be an integer 1..1000, got 0"),
        (lambda: Overrides(steps="2"), "Overrides.steps must be an integer 1..1000, got '2'"),
        (lambda: Overrides(seed=-1), "Overrides.seed must be an integer 0..9223372036854775807, got -1"),
        (lambda: Overrides(model="sdx"), "Overrides.model must be one of sdxl, sd15, "),
        (lambda: RecordingOptions(preview="jpeg"), "RecordingOptions.preview must be one of x0, taesd, vae"),
        (lambda: RecordingOptions(latent_every=0), "RecordingOptions.latent_every must be an integer 1..1000"),
        (lambda: BatchOptions(out_dir="out", device="tpu"), "BatchOptions.device must be one of auto, cpu, mps, cuda"),
        (lambda: BatchOptions(out_dir="out", dtype="int8"), "BatchOptions.dtype must be one of auto, fp16, bf16, fp32"),
        (lambda: BatchOptions(out_dir="out", batch_size=1.5), "BatchOptions.batch_size must be an integer 1..1024"),
        (lambda: BatchOptions(out_dir="out", threads=0), "BatchOptions.threads must be an integer 1..1024, got 0"),
        (lambda: BatchOptions(out_dir="out", force="yes"), "BatchOptions.force must be True or False, got 'yes'"),
        (lambda: BatchOptions(out_dir=3), "BatchOptions.out_dir must be a path (str or Path), got 3"),
        (lambda: BatchOptions(out_dir="out", shard="0/2"), "BatchOptions.shard must be a Shard"),
    ],
)
def test_options_are_checked_when_made(make, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        make()


def test_paths_may_be_text(tmp_path: Path) -> None:
    options = BatchOptions(out_dir=str(tmp_path / "out"), summary_to=str(tmp_path / "summary.md"), threads=1)
    assert options.out_dir == tmp_path / "out" and options.summary_to == tmp_path / "summary.md"
    assert BatchOptions(out_dir="out", device="cuda:1").device == "cuda:1"
    report = run_manifest(str(tiny_manifest(tmp_path, items=[{"image": "horse.png"}])), options)
    assert report.summary.counts()["done"] == 1 and "horse" in (tmp_path / "summary.md").read_text()
    with pytest.raises(UsageError, match=r"manifest must be a Manifest .* or a path, got int"):
        run_manifest(3, options)
