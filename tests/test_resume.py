"""Rerunning a manifest into the same folder regenerates only what changed."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import read_summary, run_batch, tiny_manifest

from rr_controlnet.recording.layout import item_paths

run = run_batch


def modified_times(out: Path) -> dict[str, int]:
    items = (path for path in out.iterdir() if path.suffix in (".rrd", ".png") and path.name != "overview.png")
    return {path.name: path.stat().st_mtime_ns for path in items}


summary = read_summary


def test_unchanged_items_are_skipped(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out")
    before = modified_times(tmp_path / "out")
    result = run(manifest, tmp_path / "out")
    assert "2 done, 0 failed, 0 pending, 2 skipped (up to date)" in result.output
    assert modified_times(tmp_path / "out") == before


def test_a_changed_prompt_regenerates_only_that_item(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out")
    before = modified_times(tmp_path / "out")
    hashes = {item["id"]: item["params_hash"] for item in summary(tmp_path / "out")["items"]}

    document = yaml.safe_load(manifest.read_text())
    document["items"][1]["prompt"] = "a different prompt"
    manifest.write_text(yaml.safe_dump(document))
    result = run(manifest, tmp_path / "out")

    assert "1 skipped" in result.output
    after = modified_times(tmp_path / "out")
    assert after["astronaut.rrd"] == before["astronaut.rrd"] and after["astronaut.png"] == before["astronaut.png"]
    assert after["horse.rrd"] != before["horse.rrd"] and after["horse.png"] != before["horse.png"]
    new_hashes = {item["id"]: item["params_hash"] for item in summary(tmp_path / "out")["items"]}
    assert new_hashes["astronaut"] == hashes["astronaut"] and new_hashes["horse"] != hashes["horse"]


def test_the_params_hash_is_recorded_in_the_params_entity(tmp_path: Path) -> None:
    from helpers import read_recording

    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out")
    (horse,) = [item for item in summary(tmp_path / "out")["items"] if item["id"] == "horse"]
    params = read_recording(tmp_path / "out" / "horse.rrd").static("/" + item_paths("horse").params)
    assert f"| params hash | {horse['params_hash']} |" in params.columns["TextDocument:text"][0]


def test_a_changed_input_image_regenerates_its_item(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out")
    before = modified_times(tmp_path / "out")
    (tmp_path / "horse.png").write_bytes((tmp_path / "astronaut.png").read_bytes())
    run(manifest, tmp_path / "out")
    after = modified_times(tmp_path / "out")
    assert after["astronaut.rrd"] == before["astronaut.rrd"] and after["horse.rrd"] != before["horse.rrd"]


def test_a_deleted_output_is_regenerated(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out")
    (tmp_path / "out" / "horse.png").unlink()
    result = run(manifest, tmp_path / "out")
    assert "1 skipped" in result.output and (tmp_path / "out" / "horse.png").exists()


def test_force_regenerates_everything(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out")
    before = modified_times(tmp_path / "out")
    result = run(manifest, tmp_path / "out", "--force")
    assert "skipped" not in result.output
    after = modified_times(tmp_path / "out")
    assert all(after[name] != before[name] for name in before)


def test_changed_recording_settings_regenerate(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    run(manifest, tmp_path / "out", "--preview", "none")
    result = run(manifest, tmp_path / "out", "--preview", "x0")
    assert "skipped" not in result.output
    result = run(manifest, tmp_path / "out", "--preview", "x0", "--latent-every", "2")
    assert "skipped" not in result.output


def test_items_made_without_adherence_or_recordings_are_made_again_with_them(tmp_path: Path) -> None:
    from rr_controlnet.api import BatchOptions, RecordingOptions, load_manifest, run_batch

    manifest = tiny_manifest(tmp_path)
    out = tmp_path / "out"
    run(manifest, out, "--no-adherence")
    assert all(item["adherence"] is None for item in summary(out)["items"])
    result = run(manifest, out)
    assert "2 done, 0 failed, 0 pending" in result.output and "skipped" not in result.output
    assert "item 'horse': made without control adherence (--no-adherence) before; making it again" in result.output
    assert all(item["adherence"]["strict"]["f1"] > 0 for item in summary(out)["items"])
    assert "2 skipped" in run(manifest, out, "--no-adherence").output  # scores kept are no reason to redo

    streamed = tmp_path / "streamed"
    run_batch(load_manifest(manifest), BatchOptions(out_dir=streamed, recording=RecordingOptions(save=False)))
    assert not list(streamed.glob("*.rrd"))
    result = run(manifest, streamed)
    assert "item 'horse': made without a recording (--no-save) before; making it again" in result.output
    assert "skipped" not in result.output and sorted(path.name for path in streamed.glob("*.rrd")) == [
        "astronaut.rrd",
        "horse.rrd",
    ]
