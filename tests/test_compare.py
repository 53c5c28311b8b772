"""`rr-controlnet compare BASELINE NEW`: statuses, where runs part, what it writes, and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_manifest
from rrd_contents import blueprint_views, read_recording

from rr_controlnet.cli import cli

ITEMS = [{"image": "astronaut.png"}, {"image": "horse.png", "seed": 5}, {"id": "third", "image": "horse.png"}]
STEPS = 4


def batch(manifest: Path, out: Path) -> None:
    result = CliRunner().invoke(cli, ["batch", str(manifest), "--out", str(out), "--steps", str(STEPS)])
    assert result.exit_code == 0, result.output


def compare(*args: str):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def statuses(folder: Path) -> dict[str, str]:
    return {
        item["id"]: item["status"] for item in json.loads((folder / "compare" / "compare.json").read_text())["items"]
    }


def items(folder: Path) -> dict[str, dict]:
    return {item["id"]: item for item in json.loads((folder / "compare" / "compare.json").read_text())["items"]}


def edited(manifest: Path, folder: Path, change) -> Path:
    """A copy of `manifest` in `folder` (with its images) with `change` applied to its items."""
    folder.mkdir()
    for image in ("astronaut.png", "horse.png"):
        shutil.copy(manifest.parent / image, folder / image)
    document = yaml.safe_load(manifest.read_text())
    change(document["items"])
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("baseline")
    manifest = tiny_manifest(folder, items=ITEMS)
    batch(manifest, folder / "accepted")
    return manifest, folder / "accepted"


def test_a_rerun_of_the_same_manifest_is_the_same(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    batch(manifest, tmp_path / "new")
    result = compare(accepted, tmp_path / "new")
    assert result.exit_code == 0, result.output
    assert "3 same, 0 changed, 0 new, 0 missing, 0 failed" in result.output
    assert set(statuses(tmp_path / "new").values()) == {"same"}
    horse = items(tmp_path / "new")["horse"]
    assert horse["first_divergent_step"] is None and len(horse["divergence"]) == STEPS
    assert all(step["rms"] == 0 and step["cosine_distance"] == 0 for step in horse["divergence"])
    assert horse["image"]["max_abs"] == 0 and horse["image"]["psnr"] is None


def test_a_changed_seed_is_a_change_from_the_first_step(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    result = compare(accepted, tmp_path / "new")
    assert result.exit_code == 1, result.output
    assert statuses(tmp_path / "new") == {"horse": "changed", "astronaut": "same", "third": "same"}
    horse = items(tmp_path / "new")["horse"]
    assert horse["first_divergent_step"] == 0
    assert horse["params_changed"] == {"seed": [5, 6]}
    assert next(iter(statuses(tmp_path / "new"))) == "horse"  # worst first
    markdown = (tmp_path / "new" / "compare" / "compare.md").read_text()
    assert "| horse | **changed** |" in markdown and "seed: 5 → 6" in markdown


def test_a_change_that_acts_late_diverges_late(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    batch(edited(manifest, tmp_path / "m", lambda items: items[2].update(control_guidance_end=0.5)), tmp_path / "new")
    compare(accepted, tmp_path / "new")
    third = items(tmp_path / "new")["third"]
    # The ControlNet acts on steps 0 and 1 of 4 either way; from step 2 on only the baseline has it.
    distances = [step["cosine_distance"] for step in third["divergence"]]
    assert distances[:2] == [0.0, 0.0] and all(distance > 1e-5 for distance in distances[2:])
    assert third["first_divergent_step"] == 2
    assert third["params_changed"] == {"control_guidance_end": [1.0, 0.5]}


def test_added_and_removed_items(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline

    def swap_third(entries: list) -> None:
        entries[2] = {"id": "extra", "image": "astronaut.png", "seed": 3}

    batch(edited(manifest, tmp_path / "m", swap_third), tmp_path / "new")
    result = compare(accepted, tmp_path / "new")
    assert result.exit_code == 1
    assert statuses(tmp_path / "new") == {"third": "missing", "extra": "new", "astronaut": "same", "horse": "same"}


def test_compare_rrd_shows_both_runs_step_by_step(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    compare(accepted, tmp_path / "new")
    recording = read_recording(tmp_path / "new" / "compare" / "compare.rrd")
    assert recording.application_id == "rr_controlnet_compare"
    root = "/compare/horse"
    for static in ("baseline/output", "new/output", "difference", "summary"):
        recording.static(f"{root}/{static}")
    for timed in ("baseline/preview", "new/preview", "divergence/rms", "divergence/cosine_distance"):
        assert [row.step for row in recording.timed(f"{root}/{timed}")] == list(range(STEPS)), timed
    views = blueprint_views(tmp_path / "new" / "compare" / "compare.rrd")
    assert views["horse: difference"] == ("2D", "compare/horse/difference")
    assert views["horse: divergence"] == ("TimeSeries", "compare/horse/divergence")
    assert views["horse: new preview"] == ("2D", "compare/horse/new/preview")


def test_update_baseline_accepts_the_new_run(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    shutil.copytree(accepted, tmp_path / "accepted")
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    job_summary = tmp_path / "summary.md"
    result = compare(tmp_path / "accepted", tmp_path / "new", "--update-baseline", "--summary-to", job_summary)
    assert result.exit_code == 0, result.output
    assert "baseline updated" in result.output and "| horse | **changed** |" in job_summary.read_text()
    assert not (tmp_path / "accepted" / "compare").exists()
    assert compare(tmp_path / "accepted", tmp_path / "new").exit_code == 0


def test_update_baseline_creates_the_first_baseline(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    _, accepted = baseline
    shutil.copytree(accepted, tmp_path / "new")
    assert compare(tmp_path / "first", tmp_path / "new").exit_code == 2  # without the flag: no such baseline
    result = compare(tmp_path / "first", tmp_path / "new", "--update-baseline")
    assert result.exit_code == 0, result.output
    assert set(statuses(tmp_path / "new").values()) == {"new"}
    assert items(tmp_path / "new")["horse"]["params_changed"] == {}
    assert json.loads((tmp_path / "first" / "summary.json").read_text())["items"]
    assert compare(tmp_path / "first", tmp_path / "new").exit_code == 0


def test_folders_that_are_not_outputs_are_refused(tmp_path: Path, baseline: tuple[Path, Path]) -> None:
    (tmp_path / "empty").mkdir()
    result = compare(tmp_path / "empty", baseline[1])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: baseline {tmp_path / 'empty'}: not an rr-controlnet output folder (no summary.json or shard summaries)"
    )
    result = compare(baseline[1], tmp_path / "nowhere")
    assert result.exit_code == 2 and result.output.strip() == f"error: new {tmp_path / 'nowhere'}: not a folder"
    result = compare(baseline[1], baseline[1] / ".")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: baseline and new are the same folder, {baseline[1]}: compare two runs"


def test_a_folder_a_batch_is_still_writing_is_not_compared(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    from rr_controlnet.folder_lock import FolderLock

    _, accepted = baseline
    shutil.copytree(accepted, tmp_path / "new")
    with FolderLock(tmp_path / "new"):
        result = compare(accepted, tmp_path / "new")
    assert result.exit_code == 2
    assert result.output.startswith(
        f"error: new {tmp_path / 'new'}: a batch is still writing it (the whole batch: pid {os.getpid()} on "
    )
    assert result.output.rstrip().endswith("compare once it is done")
    assert not (tmp_path / "new" / "compare").exists()


def test_an_older_baseline_a_truncated_recording_and_another_size(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    old = tmp_path / "old"
    shutil.copytree(accepted, old)
    summary = json.loads((old / "summary.json").read_text())
    for entry in summary["items"]:  # as an earlier version wrote it
        for key in ("checksums", "warnings", "adherence"):
            entry.pop(key)
    (old / "summary.json").write_text(json.dumps(summary))
    recording = (old / "astronaut.rrd").read_bytes()
    (old / "astronaut.rrd").write_bytes(recording[: len(recording) // 2])
    batch(edited(manifest, tmp_path / "m", lambda items: items[2].update(size=96)), tmp_path / "new")
    result = compare(old, tmp_path / "new")
    assert result.exit_code == 1 and "Traceback" not in result.output
    found = items(tmp_path / "new")
    assert found["third"]["status"] == "changed"
    assert "sizes differ: 64x64 in the baseline, 96x96 now" in found["third"]["notes"]
    assert found["astronaut"]["status"] == "same"
    assert any(note.startswith("recordings unreadable, steps not compared") for note in found["astronaut"]["notes"])
    assert found["horse"]["adherence_change"] == {}


def test_an_item_that_failed_in_the_new_run_is_failed(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    _, accepted = baseline
    new = tmp_path / "new"
    shutil.copytree(accepted, new)
    summary = json.loads((new / "summary.json").read_text())
    summary["items"][0].update(status="failed", error="RuntimeError: CUDA out of memory", files=[])
    (new / "summary.json").write_text(json.dumps(summary))
    result = compare(accepted, new)
    assert result.exit_code == 1
    assert items(new)["astronaut"]["status"] == "failed"
    assert items(new)["astronaut"]["notes"] == [
        "not finished in the new run: failed (RuntimeError: CUDA out of memory)"
    ]
