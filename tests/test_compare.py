"""`rr-controlnet compare BASELINE NEW`: statuses, where runs part, what it writes, and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import blueprint_views, read_recording, run_batch, run_cli, tiny_manifest
from PIL import Image

ITEMS = [{"image": "astronaut.png"}, {"image": "horse.png", "seed": 5}, {"id": "third", "image": "horse.png"}]
STEPS = 4


def batch(manifest: Path, out: Path) -> None:
    run_batch(manifest, out, "--steps", STEPS)


def compare(*args: str):
    return run_cli("compare", *args, exit_code=None)


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
    (row,) = [line for line in markdown.splitlines() if line.startswith("| horse | **changed** |")]
    assert "made another way: seed 5 → 6" in row and row.count("5 → 6") == 1  # named once


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
    from rr_controlnet.outputs.lock import FolderLock

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
    baseline_png = os.path.relpath((accepted / "astronaut.png").resolve(), (new / "compare").resolve())
    assert items(new)["astronaut"]["baseline_png"] == baseline_png
    page_images = new / "compare" / "review" / "items" / "astronaut"
    assert sorted(path.name for path in page_images.iterdir()) == ["baseline.jpg"]  # shown beside the reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda items: items[1].update(prompt="a different horse"), 'prompt "a futuristic research complex" → '),
        (lambda items: items[1].update(control_guidance_end=0.5), "control_guidance_end 1.0 → 0.5"),
        (lambda items: items[1].update(controlnet_conditioning_scale=0.51), "controlnet_conditioning_scale 0.5 → 0.51"),
    ],
)
def test_an_item_made_another_way_is_changed_whatever_its_output(
    baseline: tuple[Path, Path], tmp_path: Path, change, reason: str
) -> None:
    manifest, accepted = baseline
    batch(edited(manifest, tmp_path / "m", change), tmp_path / "new")
    result = compare(accepted, tmp_path / "new")
    assert result.exit_code == 1, result.output
    assert statuses(tmp_path / "new") == {"horse": "changed", "astronaut": "same", "third": "same"}
    (note,) = [note for note in items(tmp_path / "new")["horse"]["notes"] if note.startswith("made another way")]
    assert reason in note


def test_a_new_input_image_or_scheduler_is_a_change(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    changed_input = edited(manifest, tmp_path / "m", lambda items: None)
    shutil.copy(changed_input.parent / "astronaut.png", changed_input.parent / "horse.png")  # same name
    batch(changed_input, tmp_path / "new")
    compare(accepted, tmp_path / "new")
    assert statuses(tmp_path / "new") == {"horse": "changed", "third": "changed", "astronaut": "same"}
    assert "made another way: the input image's content" in items(tmp_path / "new")["third"]["notes"]

    other_scheduler = edited(manifest, tmp_path / "m2", lambda items: None)
    document = yaml.safe_load(other_scheduler.read_text())
    other_scheduler.write_text(yaml.safe_dump({**document, "scheduler": "euler"}, sort_keys=False))
    batch(other_scheduler, tmp_path / "new2")
    compare(accepted, tmp_path / "new2")
    assert set(statuses(tmp_path / "new2").values()) == {"changed"}
    assert 'made another way: scheduler none → "euler"' in items(tmp_path / "new2")["astronaut"]["notes"]


def test_a_damaged_or_missing_item_file_fails_its_item(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    _, accepted = baseline
    new = tmp_path / "new"
    shutil.copytree(accepted, new)
    recording = (new / "horse.rrd").read_bytes()
    (new / "horse.rrd").write_bytes(recording[:1000])
    (new / "third.png").unlink()
    result = compare(accepted, new)
    assert result.exit_code == 1, result.output
    assert statuses(new) == {"horse": "failed", "third": "failed", "astronaut": "same"}
    assert items(new)["horse"]["notes"] == [
        f"damaged in the new run: horse.rrd has 1,000 bytes where {len(recording):,} were written"
    ]
    assert items(new)["third"]["notes"] == ["damaged in the new run: third.png is missing"]
    # The same bytes in another place (a downloaded artifact: new mtimes) are intact: their hash is checked.
    copied = tmp_path / "copied"
    shutil.copytree(accepted, copied, copy_function=shutil.copyfile)
    (copied / "astronaut.png").write_bytes((copied / "astronaut.png").read_bytes()[::-1])  # same size
    assert compare(accepted, copied).exit_code == 1
    assert statuses(copied) == {"astronaut": "failed", "horse": "same", "third": "same"}
    assert "astronaut.png is not the file that was written" in items(copied)["astronaut"]["notes"][0]


@pytest.mark.parametrize("option", ["--max-cosine-distance", "--max-mean-difference"])
@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_thresholds_must_be_finite_and_not_negative(baseline: tuple[Path, Path], tmp_path: Path, option, value) -> None:
    _, accepted = baseline
    shutil.copytree(accepted, tmp_path / "new")
    result = compare(accepted, tmp_path / "new", f"{option}={value}")
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "new" / "compare").exists()


def test_compare_json_is_strict_and_its_paths_move_with_the_folders(
    baseline: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, accepted = baseline
    shutil.copytree(accepted, tmp_path / "runs" / "accepted")
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "runs" / "new")
    compare(tmp_path / "runs" / "accepted", tmp_path / "runs" / "new")

    def refuse(constant: str):
        raise AssertionError(f"compare.json holds {constant}, which strict JSON parsers reject")

    shutil.move(tmp_path / "runs", tmp_path / "moved")
    report = tmp_path / "moved" / "new" / "compare"
    document = json.loads((report / "compare.json").read_text(), parse_constant=refuse)
    horse = next(item for item in document["items"] if item["id"] == "horse")
    assert horse["new_png"] == "../horse.png" and horse["baseline_rrd"] == "../../accepted/horse.rrd"
    assert (report / horse["baseline_rrd"]).is_file() and (report / horse["new_png"]).is_file()
    assert document["baseline"] == "../../accepted" and document["new"] == ".."


def test_a_report_that_cannot_be_written_exits_2_with_the_reason(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    _, accepted = baseline
    shutil.copytree(accepted, tmp_path / "new")
    result = compare(accepted, tmp_path / "new", "--out", "/proc/rr-controlnet-report")
    assert result.exit_code == 2, result.output
    assert "/proc/rr-controlnet-report" in result.output and "no space left" not in result.output
    (tmp_path / "a-file").write_text("")
    result = compare(accepted, tmp_path / "new", "--summary-to", tmp_path / "a-file" / "summary.md")
    assert result.exit_code == 2 and "Not a directory" in result.output


def test_an_unreadable_summary_is_named_as_such(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    _, accepted = baseline
    shutil.copytree(accepted, tmp_path / "new")
    (tmp_path / "new" / "summary.json").write_text('{"items": [')
    result = compare(accepted, tmp_path / "new")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: new {tmp_path / 'new'}: summary.json is not JSON (")


def test_update_baseline_from_inside_either_folder(baseline: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    manifest, accepted = baseline
    shutil.copytree(accepted, tmp_path / "accepted")
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    monkeypatch.chdir(tmp_path / "accepted")
    result = compare(".", "../new", "--update-baseline", "--out", "report")  # a report inside the baseline
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path)
    assert (tmp_path / "accepted" / "report" / "compare.json").is_file()
    assert compare("accepted", "new").exit_code == 0
    monkeypatch.chdir(tmp_path / "new")
    assert compare("../accepted", ".", "--update-baseline").exit_code == 0
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_update_baseline_through_a_symlink_replaces_its_target(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    shutil.copytree(accepted, tmp_path / "runs" / "2026-11-01")
    (tmp_path / "current").symlink_to(tmp_path / "runs" / "2026-11-01", target_is_directory=True)
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    assert compare(tmp_path / "current", tmp_path / "new", "--update-baseline").exit_code == 0
    assert (tmp_path / "current").is_symlink()
    assert compare(tmp_path / "runs" / "2026-11-01", tmp_path / "new").exit_code == 0  # the target is the new run
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["2026-11-01"]


def test_update_baseline_takes_an_empty_folder_and_refuses_nested_ones(baseline: tuple[Path, Path], tmp_path) -> None:
    _, accepted = baseline
    shutil.copytree(accepted, tmp_path / "new")
    (tmp_path / "empty").mkdir()
    result = compare(tmp_path / "empty", tmp_path / "new", "--update-baseline")
    assert result.exit_code == 0, result.output
    assert set(statuses(tmp_path / "new").values()) == {"new"} and (tmp_path / "empty" / "summary.json").is_file()
    shutil.copytree(accepted, tmp_path / "outer")
    shutil.copytree(accepted, tmp_path / "outer" / "inner")
    result = compare(tmp_path / "outer", tmp_path / "outer" / "inner", "--update-baseline")
    assert result.exit_code == 2
    assert "is inside baseline" in result.output and "keep them side by side" in result.output
    assert (tmp_path / "outer" / "inner" / "summary.json").is_file() and not (
        tmp_path / "outer" / "inner" / "compare"
    ).exists()


# --- accepting single items ---------------------------------------------------------------------------

FOUR = [*ITEMS, {"id": "fourth", "image": "astronaut.png", "seed": 9}]


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def four_changed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A baseline of four items, and a run where every one of them changed (another seed)."""
    folder = tmp_path_factory.mktemp("four")
    manifest = tiny_manifest(folder, items=FOUR)
    batch(manifest, folder / "accepted")
    run_batch(manifest, folder / "new", "--steps", STEPS, "--seed", 7)
    return folder / "accepted", folder / "new"


def test_accepting_two_of_four_changed_items_changes_exactly_those_two(four_changed, tmp_path: Path) -> None:
    accepted, new = four_changed
    baseline = tmp_path / "baseline"
    shutil.copytree(accepted, baseline)
    before = folder_files(baseline)
    result = compare(baseline, new, "--accept", "horse,third")
    assert result.exit_code == 0, result.output
    assert "accepted into" in result.output and "horse, third" in result.output
    rows = {item["id"]: item for item in json.loads((baseline / "summary.json").read_text())["items"]}
    fresh = {item["id"]: item for item in json.loads((new / "summary.json").read_text())["items"]}
    after = folder_files(baseline)
    for item_id in ("horse", "third"):
        assert rows[item_id]["seed"] == 7 and rows[item_id]["checksums"] == fresh[item_id]["checksums"]
        for name in (f"{item_id}.png", f"{item_id}.rrd"):
            assert after[name] == (new / name).read_bytes() != before[name]
        assert (
            after[f"review/items/{item_id}/output.jpg"]
            == (new / "review" / "items" / item_id / "output.jpg").read_bytes()
        )
    for item_id in ("astronaut", "fourth"):
        assert rows[item_id]["seed"] != 7
        own = [name for name in before if name.startswith((f"{item_id}.", f"review/items/{item_id}/"))]
        assert own and all(after[name] == before[name] for name in own)
    log = [json.loads(line) for line in (baseline / "accepted.jsonl").read_text().splitlines()]
    assert [entry["item"] for entry in log] == ["horse", "third"]
    assert all(entry["from"] == os.path.relpath(new, baseline) and entry["time"] for entry in log)  # no layout
    # Compared again, the accepted two are the same and the other two still changed.
    again = compare(baseline, new, "--out", tmp_path / "again")
    statuses = {
        item["id"]: item["status"] for item in json.loads((tmp_path / "again" / "compare.json").read_text())["items"]
    }
    assert again.exit_code == 1
    assert statuses == {"horse": "same", "third": "same", "astronaut": "changed", "fourth": "changed"}


def test_accepting_from_a_decisions_file_logs_its_hash(four_changed, tmp_path: Path) -> None:
    accepted, new = four_changed
    baseline = tmp_path / "baseline"
    shutil.copytree(accepted, baseline)
    decisions = tmp_path / "decisions.json"
    decisions.write_text(json.dumps({"accept": ["fourth"], "reject": ["horse"]}))
    result = compare(baseline, new, "--accept-from", decisions)
    assert result.exit_code == 0, result.output
    (entry,) = [json.loads(line) for line in (baseline / "accepted.jsonl").read_text().splitlines()]
    assert entry["item"] == "fourth"
    assert entry["decisions_sha256"] == __import__("hashlib").sha256(decisions.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("ids", "message"),
    [("horse,nobody", "nobody: not in the new run"), ("horse,", None)],
)
def test_ids_that_cannot_be_accepted_change_nothing(four_changed, tmp_path: Path, ids: str, message) -> None:
    accepted, new = four_changed
    baseline = tmp_path / "baseline"
    shutil.copytree(accepted, baseline)
    before = folder_files(baseline)
    result = compare(baseline, new, "--accept", ids)
    if message is None:  # a trailing comma is fine: horse alone
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert folder_files(baseline) == before


def test_a_same_item_cannot_be_accepted(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    copy = tmp_path / "baseline"
    shutil.copytree(accepted, copy)
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    before = folder_files(copy)
    result = compare(copy, tmp_path / "new", "--accept", "astronaut")
    assert result.exit_code == 2
    assert "astronaut: same, only changed or new items can be accepted" in result.output
    assert folder_files(copy) == before
    bad = tmp_path / "decisions.json"
    bad.write_text('{"accept": "horse"}')
    result = compare(copy, tmp_path / "new", "--accept-from", bad)
    assert result.exit_code == 2 and f'--accept-from {bad}: field "accept" must be a list' in result.output


def test_the_pull_request_comment_stays_within_githubs_limit_on_20000_items(tmp_path: Path) -> None:
    from rr_controlnet.review.comment import COMMENT_LIMIT, comparison_comment
    from rr_controlnet.review.compare import Comparison, ItemComparison, Thresholds

    reason = "output differs: mean 12.40 levels (limit 1), cosine distance 3.1e-02 (limit 0.001) | <b>"
    statuses = ["failed"] * 50 + ["changed"] * 14_950 + ["same"] * 5_000
    listed = [ItemComparison(f"item_{index:05d}", status, [reason]) for index, status in enumerate(statuses)]
    comparison = Comparison(tmp_path / "baseline", tmp_path / "new", Thresholds(), listed)
    comment = comparison_comment(comparison, "https://example.org/run/42/compare")
    assert len(comment) <= COMMENT_LIMIT
    assert comment.startswith("### rr-controlnet compare: needs review")
    assert "50 failed, 14950 changed, 5000 same" in comment
    rows = [line for line in comment.splitlines() if line.startswith("| [item_")]
    assert rows[0].startswith(
        "| [item_00000](https://example.org/run/42/compare/index.html#item=item_00000) | **failed**"
    )
    assert "\\| &lt;b&gt;" in rows[0]  # a cell's pipes and markup escaped
    assert f"... and {15_000 - len(rows):,} more not listed here" in comment
    assert len(rows) > 100


def test_compare_writes_the_comment_it_is_asked_for(baseline: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, accepted = baseline
    batch(edited(manifest, tmp_path / "m", lambda items: items[1].update(seed=6)), tmp_path / "new")
    result = compare(accepted, tmp_path / "new", "--comment-to", tmp_path / "comment.md")
    assert result.exit_code == 1
    comment = (tmp_path / "comment.md").read_text()
    assert "1 changed, 2 same" in comment and "| [horse](index.html#item=horse) | **changed** |" in comment
    assert "more not listed" not in comment


def test_accepting_the_run_and_single_items_are_one_or_the_other(four_changed, tmp_path: Path) -> None:
    accepted, new = four_changed
    result = compare(accepted, new, "--accept", "horse", "--update-baseline", "--out", tmp_path / "report")
    assert result.exit_code == 2 and "--update-baseline accepts the whole run, --accept single items" in result.output
    result = compare(accepted, new, "--accept", "horse", "--accept-from", tmp_path / "d.json")
    assert result.exit_code == 2 and "--accept and --accept-from both choose items: give one" in result.output


def test_a_custom_models_folders_and_unit_maps_that_differ_are_named_relative_to_the_report(tmp_path: Path) -> None:
    """compare.json, compare.md and the comparison page show no path of the machine's, as a batch's files."""
    from rr_controlnet.models.random_transformer_models import save_pipeline

    save_pipeline("tiny-sdxl-union", tmp_path / "weights")
    shutil.copytree(tmp_path / "weights", tmp_path / "weights-2")
    (tmp_path / "maps").mkdir()
    shutil.copy(Path(__file__).parent.parent / "manifests" / "images" / "horse.png", tmp_path / "maps" / "a.png")
    Image.new("L", (48, 40), 90).save(tmp_path / "maps" / "b.png")
    for name, weights, depth_map in (("before", "weights", "a"), ("after", "weights-2", "b")):
        model = {"base": f"./{weights}", "controlnet": f"./{weights}/controlnet"}
        units = [{"type": "canny"}, {"type": "depth", "image": f"maps/{depth_map}.png"}]
        manifest = tiny_manifest(tmp_path, model=model, items=[{"image": "horse.png", "controls": units}], steps=1)
        run_batch(manifest, tmp_path / name, "--no-adherence")
    assert compare(tmp_path / "before", tmp_path / "after").exit_code == 1
    report = tmp_path / "after" / "compare"
    for path in report.rglob("*"):
        if path.suffix in (".json", ".md", ".js", ".html"):
            assert str(tmp_path) not in path.read_text(), path
    markdown = (report / "compare.md").read_text()
    assert "model.base: ../../weights → ../../weights-2" in markdown
    assert "controls.1-depth's map content" in markdown  # judged by its content, as the input is
