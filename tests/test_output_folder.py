"""The output folder is trusted: inputs are never overwritten, one writer at a time, done means intact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    IMAGES,
    BatchProcess,
    png_with_corrupt_pixels,
    run_cli,
    sample_image,
    statuses,
    tiny_manifest,
    unavailable,
    write_manifest,
)

from rr_controlnet.models.random_transformer_models import save_pipeline
from rr_controlnet.outputs import OutputFolder
from rr_controlnet.outputs.journal import read_outcomes
from rr_controlnet.outputs.lock import FolderLock
from rr_controlnet.outputs.names import lock_name
from rr_controlnet.spec import Shard


def run(manifest: Path, out: Path, *args: str):
    return run_cli("batch", manifest, "--out", out, *args, exit_code=None)


summary_statuses = statuses


# --- outputs never land on inputs ----------------------------------------------------------------


def test_an_output_folder_holding_the_inputs_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    result = run(manifest, tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        f"{manifest}:8: item 'astronaut' (#1): image {tmp_path}/astronaut.png is in the output folder "
        f"{tmp_path}, where item 'astronaut' writes astronaut.png: it would be overwritten; "
        "choose another output folder (--out)"
    )
    assert "item 'horse' (#2)" in lines[1]
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # nothing touched


def test_validate_checks_outputs_against_inputs_too(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    result = run_cli("validate", manifest, "--out", tmp_path, exit_code=2)
    assert "it would be overwritten" in result.output
    run_cli("validate", manifest)  # the default folder is fine


def test_a_control_map_in_the_output_folder_is_refused_like_an_image(tmp_path: Path) -> None:
    """A depth map kept in the output folder under the name an item writes would be replaced by that item."""
    out = tmp_path / "out"
    out.mkdir()
    sample_image("horse.png", out)  # the user's map, named like horse's output
    depth = {"type": "depth", "image": "out/horse.png"}
    manifest = tiny_manifest(tmp_path, items=[{"image": "horse.png", "controls": [{"type": "canny"}, depth]}])
    before = (out / "horse.png").read_bytes()
    expected = (
        f"{manifest}:8: item 'horse' (#1): controls[1].image {out}/horse.png is in the output folder {out}, "
        "where item 'horse' writes horse.png: it would be overwritten; choose another output folder (--out)"
    )
    for command in ("validate", "batch"):
        result = run_cli(command, manifest, "--out", out, exit_code=2)
        assert result.output.strip().splitlines()[0] == expected
    assert (out / "horse.png").read_bytes() == before
    assert sorted(path.name for path in out.iterdir()) == ["horse.png"]


def test_an_input_inside_the_output_folders_review_or_compare_folder_is_refused(tmp_path: Path) -> None:
    """The tool writes those folders whole (thumbnails, pages): an input kept there would be replaced."""
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    run_cli("batch", manifest, "--out", out)
    kept = out / "review" / "items" / "horse" / "input.jpg"  # the batch's own thumbnail, taken as a map
    depth = {"type": "depth", "image": "out/review/items/horse/input.jpg"}
    manifest = tiny_manifest(tmp_path, items=[{"image": "horse.png", "controls": [{"type": "canny"}, depth]}])
    before = kept.read_bytes()
    for command in ("validate", "batch"):
        result = run_cli(command, manifest, "--out", out, exit_code=2)
        assert (
            result.output.strip()
            .splitlines()[0]
            .endswith(
                f"controls[1].image {kept} is in the output folder's review/, which the tool rewrites: it would be "
                "overwritten; choose another output folder (--out)"
            )
        )
    assert kept.read_bytes() == before


def test_a_folder_of_someone_elses_files_is_refused_whole_force_included(tmp_path: Path) -> None:
    """A folder no run of this tool wrote, holding files named like the batch's: nothing is replaced."""
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "site"
    out.mkdir()
    theirs = {"index.html": b"<h1>my site</h1>", "summary.md": b"# my notes", "overview.png": b"my picture"}
    for name, data in theirs.items():
        (out / name).write_bytes(data)
    (out / "horse.PNG").write_bytes(b"my horse")  # file systems that ignore case would see horse.png
    (out / "notes.txt").write_bytes(b"unrelated, and no reason to refuse")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    for args in ((), ("--force",)):
        result = run(manifest, out, *args)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (
            f"error: output folder {out} is not an rr-controlnet output folder and holds files a batch would "
            "replace: horse.PNG, index.html, overview.png, summary.md; choose another folder (--out) or move them"
        )
        assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    result = run_cli("validate", manifest, "--out", out, exit_code=2)
    assert "holds files a batch would replace" in result.output
    (out / "horse.PNG").unlink()
    for name in theirs:
        (out / name).unlink()
    run(manifest, out)
    assert (out / "notes.txt").read_bytes() == b"unrelated, and no reason to refuse"
    assert run(manifest, out, "--force").exit_code == 0  # its own folder now: its own names


def test_an_input_named_like_a_batch_file_is_not_overwritten(tmp_path: Path) -> None:
    shutil.copy(IMAGES / "horse.png", tmp_path / "overview.png")
    manifest = write_manifest(
        tmp_path,
        {
            "version": 1,
            "model": "tiny-sd15",
            "defaults": {"steps": 1, "size": 64},
            "items": [{"id": "h", "image": "overview.png"}],
        },
    )
    result = run(manifest, tmp_path)
    assert result.exit_code == 2
    assert "where the batch writes overview.png: it would be overwritten" in result.output
    assert (tmp_path / "overview.png").read_bytes() == (IMAGES / "horse.png").read_bytes()


def test_an_input_named_like_another_items_output_is_not_overwritten(tmp_path: Path) -> None:
    shutil.copy(IMAGES / "horse.png", tmp_path / "b.png")
    manifest = write_manifest(
        tmp_path,
        {
            "version": 1,
            "model": "tiny-sd15",
            "defaults": {"steps": 1, "size": 64},
            "items": [{"id": "a", "image": "b.png"}, {"id": "b", "image": "b.png"}, {"id": "c", "image": "b.png"}],
        },
    )
    result = run(manifest, tmp_path)
    assert result.exit_code == 2
    assert "item 'a' (#1): image " in result.output and "where item 'b' writes b.png" in result.output
    assert (tmp_path / "b.png").read_bytes() == (IMAGES / "horse.png").read_bytes()


# --- an unusable folder is found before any model loads ------------------------------------------


def test_a_folder_under_a_file_is_refused_with_a_plain_message(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = run(tiny_manifest(tmp_path), tmp_path / "a-file" / "out")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: output folder {tmp_path}/a-file/out: {tmp_path}/a-file is a file, not a folder"
    )


def test_a_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    result = run(tiny_manifest(tmp_path), Path("/proc/rr-controlnet-out"))
    assert result.exit_code == 2
    assert result.output.startswith(
        "error: output folder /proc/rr-controlnet-out: cannot create /proc/rr-controlnet-out:"
    )
    assert "Traceback" not in result.output and ".partial" not in result.output


def test_a_read_only_folder_is_refused(tmp_path: Path, read_only_folder: Path) -> None:
    result = run(tiny_manifest(tmp_path), read_only_folder)
    assert result.exit_code == 2
    assert (
        result.output.strip() == f"error: output folder {read_only_folder}: cannot write there: Read-only file system"
    )


@pytest.fixture
def read_only_folder(tmp_path: Path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        unavailable(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_a_failed_run_leaves_no_folder_it_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = run(tiny_manifest(tmp_path), tmp_path / "new" / "out", "--device", "cuda")
    assert result.exit_code == 2
    assert not (tmp_path / "new").exists()


# --- one writer per folder (per shard) -----------------------------------------------------------


def test_a_second_run_into_a_locked_folder_exits_at_once_naming_the_holder(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out):
        started = time.monotonic()
        result = run(manifest, out)
        assert time.monotonic() - started < 20  # no model was loaded
    assert result.exit_code == 2
    message = result.output.strip()
    assert message.startswith(
        f"error: output folder {out} is in use by pid {os.getpid()} on {os.uname().nodename} since "
    )
    assert message.endswith(f"wait for it to finish or stop it (if that run is gone, delete {out / lock_name()})")
    assert sorted(path.name for path in out.iterdir()) == []  # the lock went with its holder


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = {"pid": int(dead.stdout), "host": os.uname().nodename, "started": "then", "command": "rr-controlnet batch"}
    (out / lock_name()).write_text(json.dumps(holder))
    result = run(manifest, out)
    assert result.exit_code == 0, result.output
    assert f"taking over the lock of pid {holder['pid']}" in result.output
    assert not (out / lock_name()).exists()


def test_shards_write_side_by_side_but_rivals_are_refused(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out, Shard(0, 2)):
        assert run(manifest, out, "--shard", "1/2").exit_code == 0  # the other shard's items
        same_shard = run(manifest, out, "--shard", "0/2")
        whole_batch = run(manifest, out)
        other_split = run(manifest, out, "--shard", "1/3")
    for result in (same_shard, whole_batch, other_split):
        assert result.exit_code == 2 and "is in use by pid" in result.output, result.output


def test_two_runs_at_once_never_delete_each_others_files(tmp_path: Path) -> None:
    manifest = tiny_manifest(
        tmp_path, items=[{"image": "horse.png", "steps": 40}, {"image": "astronaut.png", "steps": 40}]
    )
    out = tmp_path / "out"
    first = BatchProcess(manifest, out)
    first.wait_until(lambda: (out / lock_name()).exists() and first.started("horse"), "the first item never started")
    second = run(manifest, out, "--force")
    assert second.exit_code == 2 and "is in use by pid" in second.output
    output = first.finish()
    assert first.process.returncode == 0, output
    assert summary_statuses(out) == {"horse": "done", "astronaut": "done"}


# --- done means intact ---------------------------------------------------------------------------


def test_a_damaged_output_is_regenerated_without_force(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    assert run(manifest, out).exit_code == 0
    recording = (out / "horse.rrd").read_bytes()
    (out / "horse.rrd").write_bytes(recording[: len(recording) // 2])  # truncated, as a full disk would
    png = bytearray((out / "astronaut.png").read_bytes())
    png[-20] ^= 0xFF  # same size, other bytes
    (out / "astronaut.png").write_bytes(bytes(png))
    result = run(manifest, out)
    assert result.exit_code == 0 and "skipped" not in result.output
    for item_id in ("astronaut", "horse"):
        assert f"item {item_id!r}: its files changed or are gone since it was done; making it again" in result.output
    assert (out / "horse.rrd").read_bytes() != recording[: len(recording) // 2]
    entries = {entry["id"]: entry for entry in json.loads((out / "summary.json").read_text())["items"]}
    assert entries["horse"]["checksums"]["horse.rrd"]["bytes"] == (out / "horse.rrd").stat().st_size


def test_a_summary_that_is_not_ours_is_set_aside_not_trusted(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    entry = '{"id": "horse", "status": "done", "params_hash": "", '
    for malformed in (
        '["a", "list"]',
        '"a string"',
        "{not json",
        '{"items": [' + entry + '"files": ["horse.png"], "checksums": {"horse.png": "x"}}]}',
        '{"items": [' + entry + '"files": [3]}]}',
        '{"items": [' + entry + '"files": ["../horse.png"]}]}',
    ):
        out.mkdir(exist_ok=True)
        (out / "summary.json").write_text(malformed)
        result = run(manifest, out)
        assert result.exit_code == 0, result.output
        assert f"warning: {out / 'summary.json'} " in result.output and "not trusted" in result.output
        assert summary_statuses(out) == {"astronaut": "done", "horse": "done"}
        (set_aside,) = out.glob("summary.json.broken-*")
        assert set_aside.read_text() == malformed
        shutil.rmtree(out)


def test_the_journal_keeps_what_the_summary_has_not_caught_up_with(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    assert run(manifest, out).exit_code == 0
    done = json.loads((out / "summary.json").read_text())["items"]
    # As a killed run leaves it: summary.json from its start, the finished items in the journal.
    pending = [{**entry, "status": "pending", "files": [], "checksums": {}} for entry in done]
    (out / "summary.json").write_text(json.dumps({"version": 1, "items": pending}))
    journal = "".join(json.dumps(entry) + "\n" for entry in done) + '{"id": "astr'  # a line cut short
    (out / ".journal.jsonl").write_text(journal)
    assert {item_id: outcome.status for item_id, outcome in read_outcomes(out).items()} == {
        "astronaut": "done",
        "horse": "done",
    }
    result = run(manifest, out)
    assert result.exit_code == 0 and "2 skipped (up to date)" in result.output
    assert not (out / ".journal.jsonl").exists()  # merged into summary.json


def test_a_journal_with_a_broken_line_inside_is_not_trusted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".journal.jsonl").write_text('{"id": "a", "status": "done"}\n[1, 2]\n{"id": "b", "status": "done"}\n')
    messages: list[str] = []
    assert read_outcomes(out, [".journal.jsonl"], messages.append) == {}
    assert messages[0].startswith(
        f"warning: {out / '.journal.jsonl'} has a line that is not an rr-controlnet outcome (line 2)"
    )
    assert list(out.glob(".journal.jsonl.broken-*"))


def test_view_passes_paths_that_never_read_as_options(tmp_path: Path) -> None:
    from rr_controlnet.recording.viewer import viewer_command

    (tmp_path / "-rf.rrd").write_bytes(b"")
    (tmp_path / "cat.rrd").write_bytes(b"")
    command = viewer_command(tmp_path)
    assert command[1:] == [str(tmp_path.resolve() / "-rf.rrd"), str(tmp_path.resolve() / "cat.rrd")]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    from rr_controlnet.outputs.files import atomic_path

    with atomic_path(tmp_path / "a.png") as partial:
        partial.write_bytes(b"png")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0o600


def test_a_rerun_removes_the_overview_pages_a_killed_run_left_half_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".overview-007.png.k3x9a1.partial").write_bytes(b"half a page")
    (out / ".notes.txt.k3x9a1.partial").write_bytes(b"someone else's")
    assert run(tiny_manifest(tmp_path), out).exit_code == 0
    assert sorted(path.name for path in out.glob(".*.partial")) == [".notes.txt.k3x9a1.partial"]


# --- no machine paths in the folder -----------------------------------------------------------------


def _text_files_naming(folder: Path, text: str) -> list[str]:
    """The files under `folder` that read as UTF-8 text and contain `text`."""
    naming = []
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                content = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                continue  # recordings and images
            if text in content:
                naming.append(str(path.relative_to(folder)))
    return naming


def test_no_text_file_in_the_output_folder_holds_an_absolute_path(tmp_path: Path) -> None:
    """A CI artifact must not show the runner's layout, and its paths must stay right once downloaded."""
    project = tmp_path / "project"
    project.mkdir()
    items = [
        {"image": "astronaut.png"},
        {"image": "horse.png", "sweep": {"seed": [1, 2]}},
        {"id": "broken", "image": "broken.png"},
    ]
    manifest = tiny_manifest(project, items=items, steps=2)
    (project / "broken.png").write_bytes(png_with_corrupt_pixels(IMAGES / "horse.png"))
    baseline, out = project / "baseline", project / "out"
    assert run(manifest, baseline).exit_code == 1  # the broken input fails its item
    assert run(manifest, out, "--seed", "3").exit_code == 1
    run_cli("compare", baseline, out, exit_code=1)
    assert _text_files_naming(out, str(tmp_path)) == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["manifest"] == "../manifest.yaml"
    assert {item["image"] for item in summary["items"]} == {"../astronaut.png", "../horse.png", "../broken.png"}

    moved = tmp_path / "downloaded"
    shutil.copytree(project, moved)
    shutil.rmtree(project)
    folder_summary = OutputFolder(moved / "out").read()
    assert {outcome.image for outcome in folder_summary.items} == {
        str(moved / name) for name in ("astronaut.png", "horse.png", "broken.png")
    }
    run_cli("review", moved / "out")
    rerun = run(moved / "manifest.yaml", moved / "out", "--seed", "3")
    assert "3 skipped (up to date)" in rerun.output  # the moved inputs are found and still the same


def test_a_custom_models_folders_and_a_units_map_are_named_relative_to_the_output_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    save_pipeline("tiny-flux-union", project / "weights")
    (project / "maps").mkdir()
    sample_image("horse.png", project / "maps")
    model = {"base": "./weights", "controlnet": "./weights/controlnet"}
    units = [{"type": "canny"}, {"type": "depth", "image": "maps/horse.png"}]
    manifest = tiny_manifest(project, model=model, items=[{"image": "horse.png", "controls": units}], steps=1)
    baseline, out = project / "baseline", project / "out"
    run(manifest, baseline, "--no-adherence")
    run(manifest, out, "--no-adherence", "--seed", "3")
    run_cli("compare", baseline, out, exit_code=1)
    assert _text_files_naming(out, str(tmp_path)) == []
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["model"]["base"], summary["model"]["controlnet"]) == ("../weights", "../weights/controlnet")
    assert OutputFolder(out).read().model["base"] == str(project / "weights")  # absolute again when read
    rerun = run(manifest, out, "--no-adherence", "--seed", "3")
    assert "1 skipped (up to date)" in rerun.output


def test_a_units_own_local_controlnet_is_named_relative_to_the_output_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    (project / "weights" / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    units = [{"type": "canny"}, {"type": "canny", "model": "./weights", "low": 50}]
    manifest = tiny_manifest(project, items=[{"image": "horse.png", "controls": units}], steps=1)
    run(manifest, project / "out", "--no-adherence")
    assert _text_files_naming(project / "out", str(tmp_path)) == []
    summary = json.loads((project / "out" / "summary.json").read_text())
    assert summary["items"][0]["params"]["controls"]["1-canny"]["model"] == "../weights"
    assert OutputFolder(project / "out").read().items[0].params["controls"]["1-canny"]["model"] == str(
        project / "weights"
    )
    assert "1 skipped (up to date)" in run(manifest, project / "out", "--no-adherence").output


def test_folders_that_recorded_absolute_paths_still_read(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    run(manifest, out)
    summary_file = out / "summary.json"
    document = json.loads(summary_file.read_text())
    document["manifest"] = str(manifest)
    for item in document["items"]:
        item["image"] = str(tmp_path / Path(item["image"]).name)
    summary_file.write_text(json.dumps(document))
    summary = OutputFolder(out).read()
    assert summary.manifest == str(manifest)
    assert {outcome.image for outcome in summary.items} == {
        str(tmp_path / "astronaut.png"),
        str(tmp_path / "horse.png"),
    }
    result = run(manifest, out)
    assert result.exit_code == 0 and "2 skipped (up to date)" in result.output
