"""No output folder shows the layout of the machine that made it: every path in its text files (the PNG's
text chunks and the recordings included) is relative to the folder, and two runs of one manifest compare the
same wherever they were made from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import read_recording, read_summary, run_batch, run_cli, sample_image, write_manifest
from PIL import Image
from test_control_units import depth_maps

from rr_controlnet.models.random_transformer_models import save_pipeline
from rr_controlnet.outputs.records import BatchSummary, paths_named

UNITS = [{"type": "canny"}, {"type": "depth", "image": "maps/depth/{id}.png", "scale": 0.6}]


def manifest_with_a_unit_map(folder: Path, model: str | dict = "tiny-sd15", units: list | None = None) -> Path:
    sample_image("horse.png", folder)
    depth_maps(folder, "horse")
    document = {
        "version": 1,
        "model": model,
        "defaults": {"prompt": "a horse", "steps": 2, "size": 64},
        "items": [{"image": "horse.png", "controls": units or UNITS}],
    }
    return write_manifest(folder, document)


def texts_of(out: Path) -> dict[Path, str]:
    """Every text an output folder holds: its text files, its PNGs' text chunks, its recordings' strings."""
    texts = {}
    for path in out.rglob("*"):
        if path.suffix == ".png":
            texts[path] = json.dumps(Image.open(path).text)
        elif path.suffix == ".rrd":
            rows = [row.columns for rows in read_recording(path).rows.values() for row in rows]
            texts[path] = json.dumps(rows, default=str)
        elif path.is_file() and path.suffix not in (".jpg", ".rbl"):
            texts[path] = path.read_text(encoding="utf-8")
    return texts


def test_two_runs_of_a_manifest_named_from_its_own_folder_compare_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest named relative to the working folder (`batch manifest.yaml`): its unit maps are written
    relative to each output folder like its inputs, so identical runs into two folders are `same`."""
    manifest_with_a_unit_map(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_batch("manifest.yaml", "first", "--no-adherence", "--threads", "1")
    run_batch("manifest.yaml", "second", "--no-adherence", "--threads", "1")
    unit = read_summary(tmp_path / "first")["items"][0]["params"]["controls"]["1-depth"]
    assert unit["image"] == "../maps/depth/horse.png"  # as the item's own "image": "../horse.png"
    result = run_cli("compare", "first", "second")
    assert "1 same, 0 changed" in result.output, result.output


def test_accepting_an_item_keeps_its_unit_map_named_from_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_with_a_unit_map(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_batch("manifest.yaml", "baseline", "--no-adherence")
    run_batch("manifest.yaml", "new", "--no-adherence", "--seed", "7")
    run_cli("compare", "baseline", "new", "--accept", "horse")
    unit = read_summary(tmp_path / "baseline")["items"][0]["params"]["controls"]["1-depth"]
    assert unit["image"] == "../maps/depth/horse.png"
    (accepted,) = (tmp_path / "baseline" / "accepted.jsonl").read_text().splitlines()
    assert json.loads(accepted)["from"] == "../new"


def test_a_unit_map_is_compared_by_its_content_not_its_path(tmp_path: Path) -> None:
    """The same map under two names is the same map; a map whose content changed is named as such."""
    manifest = manifest_with_a_unit_map(tmp_path)
    run_batch(manifest, tmp_path / "before", "--no-adherence")
    (tmp_path / "maps" / "depth" / "horse.png").rename(tmp_path / "maps" / "depth" / "moved.png")
    moved = [UNITS[0], {**UNITS[1], "image": "maps/depth/moved.png"}]
    run_batch(manifest_with_a_unit_map(tmp_path, units=moved), tmp_path / "after", "--no-adherence")
    assert "1 same" in run_cli("compare", tmp_path / "before", tmp_path / "after").output

    Image.new("L", (48, 40), 90).save(tmp_path / "maps" / "depth" / "moved.png")
    run_batch(tmp_path / "manifest.yaml", tmp_path / "changed", "--no-adherence")
    run_cli("compare", tmp_path / "before", tmp_path / "changed", exit_code=1)
    report = (tmp_path / "changed" / "compare" / "compare.md").read_text()
    assert "made another way: controls.1-depth's map content" in report, report
    assert "maps/depth" not in report


def test_an_older_folders_unit_map_named_from_where_its_batch_ran_is_kept_as_written(tmp_path: Path) -> None:
    """Folders written before map paths were relative to the folder name them as the manifest did; that is
    not the folder's, so they are not read as if it were."""
    unit = {"type": "depth", "image": "maps/depth/horse.png", "map_sha256": "ab"}
    item = {"id": "horse", "status": "done", "image": "../horse.png", "params": {"controls": {"1-depth": unit}}}
    summary = BatchSummary.from_document({"manifest": "../m.yaml", "items": [item]}, tmp_path / "out")
    assert summary.items[0].params["controls"]["1-depth"]["image"] == "maps/depth/horse.png"
    assert summary.items[0].image == str(tmp_path / "horse.png")
    written = summary.to_document(tmp_path / "out")["items"][0]["params"]["controls"]["1-depth"]["image"]
    assert written == "maps/depth/horse.png"


def test_compare_notes_read_as_values_not_python(tmp_path: Path) -> None:
    manifest = manifest_with_a_unit_map(tmp_path)
    run_batch(manifest, tmp_path / "before", "--no-adherence")
    document = yaml.safe_load(manifest.read_text())
    document["items"][0]["controls"][1]["end"] = 0.5
    document["items"][0]["negative_prompt"] = "blurry"
    run_batch(write_manifest(tmp_path, document), tmp_path / "after", "--no-adherence")
    run_cli("compare", tmp_path / "before", tmp_path / "after", exit_code=1)
    report = (tmp_path / "after" / "compare" / "compare.md").read_text()
    assert 'negative_prompt "" → "blurry"' in report and "controls.1-depth.end 1.0 → 0.5" in report, report
    assert "'" not in report.split("made another way: ")[1].splitlines()[0]


def test_no_file_of_a_custom_models_folder_shows_the_machines_layout(tmp_path: Path) -> None:
    """A custom local model, a unit with its own local ControlNet and a map, a unit whose ControlNet has no
    weights (a failed item, its error in summary.json, summary.md and the review page): every text in
    the folder, the PNGs' chunks and the recordings included, names paths relative to it or by name."""
    save_pipeline("tiny-sd15", tmp_path / "weights")
    model = {"base": "./weights", "controlnet": "./weights/controlnet"}
    units = [{"type": "canny"}, {"type": "depth", "image": "maps/depth/{id}.png", "model": "./weights/controlnet"}]
    manifest = manifest_with_a_unit_map(tmp_path, model, units)
    document = yaml.safe_load(manifest.read_text())
    (tmp_path / "unfinished").mkdir()  # a ControlNet's config without its weights: fails when loaded
    shutil.copy(tmp_path / "weights" / "controlnet" / "config.json", tmp_path / "unfinished" / "config.json")
    broken = [units[0], {**units[1], "model": "./unfinished"}]
    document["items"].append({"id": "broken", "image": "horse.png", "controls": broken})
    depth_maps(tmp_path, "broken")
    run_batch(write_manifest(tmp_path, document), tmp_path / "out", exit_code=1)
    texts = texts_of(tmp_path / "out")
    assert any(path.suffix == ".rrd" for path in texts) and any(path.suffix == ".png" for path in texts)
    showing = [path.relative_to(tmp_path).as_posix() for path, text in texts.items() if str(tmp_path) in text]
    assert not showing
    chunk = json.loads(Image.open(tmp_path / "out" / "horse.png").text["rr-controlnet"])
    assert chunk["model"]["base"] == "../weights" and chunk["controls"][1]["image"] == "../maps/depth/horse.png"
    assert "cannot be loaded" in json.dumps(read_summary(tmp_path / "out")["items"])


def test_a_message_names_the_files_it_mentions_by_name() -> None:
    message = "model '/data/cm/sd' cannot be loaded (no config.json in /data/cm/sd.); run `hf download /data/cm/sd`"
    assert paths_named(message) == "model 'sd' cannot be loaded (no config.json in sd.); run `hf download sd`"
    assert (
        paths_named("see https://huggingface.co/a/b, 1/2 of cats/dogs")
        == "see https://huggingface.co/a/b, 1/2 of cats/dogs"
    )
