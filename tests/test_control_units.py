"""Several control units per item: `controls:` checked, run on the tiny models, swept, recorded, and an item
without units unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import blueprint_views, read_recording, run_batch, run_cli, sample_image, summary_items, write_manifest
from PIL import Image
from test_model_downloads import model_folders  # noqa: F401 - a fixture

from rr_controlnet.manifest.document import load_manifest

DEPTH = {"type": "depth", "image": "maps/depth/{id}.png", "scale": 0.8}


def depth_maps(folder: Path, *ids: str) -> None:
    """A depth-like map per item id: a horizontal ramp, at another size than the inputs (it is resized)."""
    (folder / "maps" / "depth").mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (40, 1))
    for item_id in ids:
        Image.fromarray(ramp).save(folder / "maps" / "depth" / f"{item_id}.png")


def units_manifest(folder: Path, model: str = "tiny-sd15", items: list[dict] | None = None, **defaults) -> Path:
    sample_image("horse.png", folder)
    sample_image("astronaut.png", folder)
    depth_maps(folder, "horse", "astronaut")
    document = {
        "version": 1,
        "model": model,
        "defaults": {"prompt": "a horse", "steps": 2, "size": 64, **defaults},
        "items": items if items is not None else [{"image": "horse.png"}],
    }
    return write_manifest(folder, document)


def output_pixels(out: Path, item_id: str) -> np.ndarray:
    return np.asarray(Image.open(out / f"{item_id}.png"))


# --- the manifest ----------------------------------------------------------------------------------


def test_units_take_the_items_values_where_they_leave_them_out(tmp_path: Path) -> None:
    controls = [{"type": "canny", "low": 50}, DEPTH]
    manifest = units_manifest(
        tmp_path, controlnet_conditioning_scale=0.7, items=[{"image": "horse.png", "controls": controls}]
    )
    (item,) = load_manifest(manifest).items
    canny, depth = item.controls
    assert (canny.type, canny.scale, canny.low, canny.high, canny.image) == ("canny", 0.7, 50, 200, None)
    assert (depth.type, depth.scale, depth.start, depth.end) == ("depth", 0.8, 0.0, 1.0)
    assert depth.image == tmp_path / "maps" / "depth" / "horse.png"  # {id} filled in


def test_an_items_controls_replace_the_defaults(tmp_path: Path) -> None:
    manifest = units_manifest(
        tmp_path,
        controls=[{"type": "canny"}, DEPTH],
        items=[{"image": "horse.png"}, {"image": "astronaut.png", "controls": [{"type": "canny", "scale": 0.2}]}],
    )
    horse, astronaut = load_manifest(manifest).items
    assert [unit.type for unit in horse.controls] == ["canny", "depth"]
    assert [(unit.type, unit.scale) for unit in astronaut.controls] == [("canny", 0.2)]


def test_validate_locates_each_unit_problem(tmp_path: Path) -> None:
    manifest = units_manifest(tmp_path)
    document = yaml.safe_load(manifest.read_text())
    document["items"] = [
        {"id": "cat", "image": "horse.png", "controls": [{"type": "canny"}, {"type": "depth", "image": "maps/depth/{id}.png"}]},
        {"image": "astronaut.png", "controls": [{"type": "pose"}, {"type": "canny", "scale": 9}, {"type": "seg", "image": "x.png", "low": 3}]},
        {"id": "many", "image": "horse.png", "controls": [{"type": "canny"}] * 5},
        {"id": "other", "image": "horse.png", "controls": [{"type": "canny", "model": "tiny-sdxl"}], "sweep": {"controls.2.scale": [0.1, 0.2]}},
    ]  # fmt: skip
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_cli("validate", manifest, exit_code=2)
    lines = result.output.splitlines()
    expected = [
        "item 'cat' (#1): controls[1].image: maps/depth/cat.png does not exist",
        "item 'astronaut' (#2): controls[0].image is required for a pose unit",
        "item 'astronaut' (#2): controls[1].scale must be a number 0..5, got 9",
        "item 'astronaut' (#2): controls[2].low is for canny units only",
        "item 'astronaut' (#2): controls[2].image: x.png does not exist",
        "item 'many' (#3): controls lists 5 units, at most 4",
        "item 'other' (#4): controls[0].model 'tiny-sdxl' is a sdxl ControlNet, the base model is sd15",
        "item 'other' (#4): sweep.controls.2.scale: the item has 1 unit (indexes start at 0)",
    ]
    for text in expected:
        (line,) = [line for line in lines if text in line]
        assert line.startswith(f"{manifest}:") and line.split(":")[1].isdigit(), line
    cat_line = next(line for line in lines if "maps/depth/cat.png" in line)
    assert int(cat_line.split(":")[1]) == document_line(manifest, "maps/depth/{id}.png", 1)


def test_a_units_local_model_must_be_a_controlnet_folder_beside_the_manifest(tmp_path: Path) -> None:
    """Read relative to the manifest (validate runs elsewhere), as model.controlnet is; a hub id is left alone."""
    (tmp_path / "cm" / "pipeline").mkdir(parents=True)
    (tmp_path / "cm" / "pipeline" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    for name, config in (("net", {}), ("xl", {"addition_embed_type": "text_time"})):
        (tmp_path / "cm" / name).mkdir()
        (tmp_path / "cm" / name / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))
    depth = {"type": "depth", "image": "maps/depth/horse.png"}
    items = [
        {"id": "gone", "image": "horse.png", "controls": [{**depth, "model": "./cm/nonexistent"}]},
        {"id": "pipe", "image": "horse.png", "controls": [{**depth, "model": "cm/pipeline"}]},
        {"id": "xl", "image": "horse.png", "controls": [{**depth, "model": "cm/xl"}]},
        {"id": "fine", "image": "horse.png", "controls": [{**depth, "model": "./cm/net"}, {**depth, "model": "a/hub-id"}]},
        {"id": "swept", "image": "horse.png", "controls": [depth], "sweep": {"controls.0.model": ["./cm/net", "~/none/x"]}},
    ]  # fmt: skip
    result = run_cli("validate", units_manifest(tmp_path, items=items), exit_code=2)
    problems = [line.split(": ", 2)[2] for line in result.output.splitlines()[:-1]]
    assert problems == [
        f"controls[0].model './cm/nonexistent': no such file or folder ({tmp_path}/cm/nonexistent)",
        f"controls[0].model 'cm/pipeline': {tmp_path}/cm/pipeline is not a ControlNet folder: it has no "
        "ControlNet's config.json (a pipeline's folder: its ControlNet is a folder inside it)",
        "controls[0].model 'cm/xl' is a sdxl ControlNet, the base model is sd15",
        f"sweep.controls.0.model '~/none/x': no such file or folder ({Path.home()}/none/x)",
    ]
    assert len(result.output.splitlines()) == 5
    (fine,) = load_manifest(units_manifest(tmp_path, items=items[3:4])).items
    assert [unit.model for unit in fine.controls] == [str(tmp_path / "cm" / "net"), "a/hub-id"]


def test_a_unit_type_that_is_no_lower_case_word_is_one_line_that_says_what_a_type_is(tmp_path: Path) -> None:
    item = {
        "image": "horse.png",
        "controls": [
            {"type": "Depth", "image": "maps/depth/horse.png"},
            {"type": "dpeth", "image": "maps/depth/horse.png"},
        ],
    }
    result = run_cli("validate", units_manifest(tmp_path, model="tiny-flux-union", items=[item]), exit_code=2)
    problems = [line.split(": ", 2)[2] for line in result.output.splitlines()[:-1]]
    assert problems == [
        "controls[0].type must be a word in lower case (letters, digits, _ and -): canny, depth, pose, ..., "
        "got 'Depth'",
        "controls[1].type 'dpeth': the union model tiny-flux-union (flux-union) has no mode for it (did you mean "
        "'depth'?); it knows canny, tile, depth, blur, pose, openpose, gray, low_quality, lq",
    ]


def document_line(manifest: Path, text: str, occurrence: int) -> int:
    """The line (1-based) of the `occurrence`th line of a file holding `text`."""
    found = [number for number, line in enumerate(manifest.read_text().splitlines(), start=1) if text in line]
    return found[occurrence - 1]


def test_a_unit_type_the_preset_has_no_controlnet_for_must_name_one(tmp_path: Path) -> None:
    manifest = units_manifest(
        tmp_path, model="sdxl", items=[{"image": "horse.png", "controls": [{"type": "seg", "image": "horse.png"}]}]
    )
    result = run_cli("validate", manifest, exit_code=2)
    assert "controls[0].model: sdxl has no default ControlNet for 'seg' units (it has: canny, depth)" in result.output


def test_a_sweep_over_a_units_scale_gives_variants_with_that_scale(tmp_path: Path) -> None:
    item = {
        "image": "horse.png",
        "controls": [{"type": "canny"}, DEPTH],
        "sweep": {"controls.1.scale": {"from": 0.3, "to": 0.9, "step": 0.3}},
    }
    items = load_manifest(units_manifest(tmp_path, items=[item])).items
    assert [variant.id for variant in items] == ["horse_c1scale0.3", "horse_c1scale0.6", "horse_c1scale0.9"]
    assert [variant.controls[1].scale for variant in items] == [0.3, 0.6, 0.9]
    assert {variant.controls[0].scale for variant in items} == {0.5}
    assert all(variant.controls[1].image.name == "horse.png" for variant in items)  # the source's map


def test_a_swept_unit_value_is_checked_like_the_field(tmp_path: Path) -> None:
    item = {
        "image": "horse.png",
        "controls": [{"type": "canny"}],
        "sweep": {"controls.0.scale": [0.5, 7], "controls.0.high": [10]},
    }
    result = run_cli("validate", units_manifest(tmp_path, items=[item]), exit_code=2)
    assert "sweep.controls.0.scale must be a number 0..5, got 7" in result.output
    assert "controls[0].low must be below its high, got 100 >= 10" in result.output


def test_a_unit_field_no_sweep_can_vary_is_named_with_the_ones_it_can(tmp_path: Path) -> None:
    item = {
        "image": "horse.png",
        "controls": [DEPTH],
        "sweep": {"controls.0.image": ["a.png"], "controls.0.type": ["pose"]},
    }
    result = run_cli("validate", units_manifest(tmp_path, model="tiny-flux-union", items=[item]), exit_code=2)
    can = "a sweep varies a unit's scale, start, end, low, high or model"
    assert f"sweep.controls.0.image cannot be swept: {can}" in result.output
    assert f"sweep.controls.0.type cannot be swept: {can}" in result.output
    assert "known keys" not in result.output
    item["sweep"] = {"zip": {"controls.0.image": ["a.png"], "controls.0.scale": [0.2]}}
    result = run_cli("validate", units_manifest(tmp_path, model="tiny-flux-union", items=[item]), exit_code=2)
    assert f"sweep.zip.controls.0.image cannot be swept: {can}" in result.output


# --- batches -----------------------------------------------------------------------------------------


# sha256 of the PNGs a batch of tests/helpers.py's tiny_manifest (tiny-sd15, --no-adherence) wrote before control
# units existed (at commit a710eb1): an item without `controls` must still give these bytes.
BEFORE_UNITS = {
    "astronaut.png": "6fffe85718ec7020c29693fda24d39951285826c421d2a28bbdae0264ec07704",
    "horse.png": "0f400135652196edfffe0c65fa1e87b2cfd9d571df0f48a3827ecdf7c19d9e0b",
}


def test_a_manifest_without_controls_gives_the_same_bytes_as_before(tmp_path: Path) -> None:
    from helpers import tiny_manifest

    run_batch(tiny_manifest(tmp_path), tmp_path / "out", "--no-adherence")
    for name, digest in BEFORE_UNITS.items():
        assert hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest() == digest, name


def test_one_default_canny_unit_draws_what_no_controls_draws(tmp_path: Path) -> None:
    items = [{"image": "horse.png"}, {"id": "unit", "image": "horse.png", "controls": [{"type": "canny"}]}]
    run_batch(units_manifest(tmp_path, items=items), tmp_path / "out", "--no-adherence")
    assert np.array_equal(output_pixels(tmp_path / "out", "horse"), output_pixels(tmp_path / "out", "unit"))


def test_a_map_gone_during_the_run_fails_its_item_naming_the_unit_and_the_path_as_written(tmp_path: Path) -> None:
    from rr_controlnet.api import BatchOptions, RecordingOptions, run_manifest

    controls = [{"type": "canny"}, DEPTH]
    items = [{"image": "horse.png", "controls": controls}, {"image": "astronaut.png", "controls": controls}]
    manifest = load_manifest(units_manifest(tmp_path, items=items))  # validated while the maps are there
    (tmp_path / "maps" / "depth" / "astronaut.png").unlink()
    out = tmp_path / "out"
    messages: list[str] = []
    run_manifest(manifest, BatchOptions(out_dir=out, recording=RecordingOptions(adherence=False)), log=messages.append)
    reason = "controls[1].image maps/depth/astronaut.png cannot be read: No such file or directory"
    assert f"item 'astronaut': failed: {reason}" in messages
    entries = summary_items(out)
    assert (entries["astronaut"]["status"], entries["astronaut"]["error"]) == ("failed", reason)
    assert entries["horse"]["status"] == "done"


def test_a_map_of_another_aspect_ratio_than_the_image_gives_its_item_a_warning(tmp_path: Path) -> None:
    depth = {"type": "depth", "image": "maps/depth/square.png"}
    items = [
        {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH]},  # 48x40 for 400x328: a pixel's rounding
        {"id": "other", "image": "horse.png", "controls": [{"type": "canny"}, depth]},
    ]
    manifest = units_manifest(tmp_path, items=items)
    Image.new("RGB", (32, 32)).save(tmp_path / "maps" / "depth" / "square.png")
    result = run_batch(manifest, tmp_path / "out", "--no-adherence")
    warning = (
        "controls[1].image maps/depth/square.png is 32x32, the item's image 400x328: another aspect ratio; each "
        "was resized (crop) to 64x64 from its own shape, so the map may not line up with the image"
    )
    assert f"item 'other': warning: {warning}" in result.output
    entries = summary_items(tmp_path / "out")
    assert (entries["horse"]["warnings"], entries["other"]["warnings"]) == ([], [warning])


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl", "tiny-flux", "tiny-sd3"])
def test_a_canny_unit_and_a_depth_map_run_and_are_recorded(tmp_path: Path, model: str) -> None:
    items = [
        {"id": "one", "image": "horse.png", "controls": [{"type": "canny"}]},
        {"image": "horse.png", "controls": [{"type": "canny", "low": 50, "high": 150}, DEPTH]},
    ]
    out = tmp_path / "out"
    run_batch(units_manifest(tmp_path, model=model, items=items), out, "--no-adherence")
    assert not np.array_equal(output_pixels(out, "one"), output_pixels(out, "horse"))  # the second unit acts

    entry = summary_items(out)["horse"]
    assert entry["status"] == "done"
    depth = entry["params"]["controls"]["1-depth"]
    assert (depth["type"], depth["scale"], depth["image"]) == ("depth", 0.8, "../maps/depth/horse.png")  # relative
    assert depth["map_sha256"] == hashlib.sha256((tmp_path / "maps/depth/horse.png").read_bytes()).hexdigest()

    recording = read_recording(out / "horse.rrd")
    (depth_row,) = recording.entity("/items/horse/control/1-depth")
    (canny_row,) = recording.entity("/items/horse/control/0-canny")
    from helpers import decoded_image

    depth_map = decoded_image(depth_row)
    assert depth_map.shape == (64, 64, 3) and depth_map[:, 0].mean() < depth_map[:, -1].mean()  # the ramp, resized
    assert set(np.unique(decoded_image(canny_row))) <= {0, 255}
    views = blueprint_views(out / "horse.rrd")
    assert views["horse: 1-depth"] == ("2D", "items/horse/control/1-depth")
    assert views["one: 0-canny"] == ("2D", "items/one/control/0-canny")

    text = Image.open(out / "horse.png").text
    assert 'ControlNet 0: "Module: canny, Model: ' in text["parameters"]
    assert "Threshold A: 50, Threshold B: 150" in text["parameters"]
    assert 'ControlNet 1: "Module: depth, Model: random (depth), Weight: 0.8, Guidance Start: 0' in text["parameters"]
    chunk = json.loads(text["rr-controlnet"])
    assert [unit["type"] for unit in chunk["controls"]] == ["canny", "depth"]


def test_the_items_edge_map_is_the_one_its_canny_unit_gave_the_model(tmp_path: Path) -> None:
    items = [
        {"id": "thresholds", "image": "horse.png", "controls": [{"type": "canny", "low": 20, "high": 60}]},
        {"id": "depth_only", "image": "horse.png", "controls": [DEPTH]},
    ]
    out = tmp_path / "out"
    manifest = units_manifest(tmp_path, items=items)
    depth_maps(tmp_path, "depth_only")
    run_batch(manifest, out, "--no-adherence")
    from helpers import decoded_image

    recording = read_recording(out / "thresholds.rrd")
    given = decoded_image(recording.static("/items/thresholds/control/0-canny"))
    shown = decoded_image(recording.static("/items/thresholds/input/canny"))
    assert np.array_equal(shown, given)  # the unit's 20/60 map, not the item's 100/200 one
    assert np.array_equal(np.asarray(Image.open(out / "review/items/thresholds/canny.png").convert("L")), given)

    # An item whose units are all maps of other types was given no edge map: none is shown.
    assert "/items/depth_only/input/canny" not in read_recording(out / "depth_only.rrd").rows
    assert not (out / "review/items/depth_only/canny.png").exists()


def test_a_sweep_over_a_units_scale_draws_a_grid(tmp_path: Path) -> None:
    item = {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH], "sweep": {"controls.1.scale": [0.0, 2.0]}}
    out = tmp_path / "out"
    run_batch(units_manifest(tmp_path, items=[item]), out, "--no-adherence")
    entries = summary_items(out)
    assert set(entries) == {"horse_c1scale0", "horse_c1scale2"}
    assert entries["horse_c1scale2"]["sweep"]["axes"] == [["controls.1.scale"]]
    assert not np.array_equal(output_pixels(out, "horse_c1scale0"), output_pixels(out, "horse_c1scale2"))
    views = blueprint_views(out / "batch.rbl")
    assert views["c1scale 2"] == ("2D", "items/horse_c1scale2/output")
    assert views["horse: 1-depth"] == ("2D", "items/horse_c1scale0/control/1-depth")
    assert len(list(out.glob("overview*.png"))) >= 1


def test_a_changed_map_makes_its_item_again(tmp_path: Path) -> None:
    manifest = units_manifest(tmp_path, items=[{"image": "horse.png", "controls": [{"type": "canny"}, DEPTH]}])
    out = tmp_path / "out"
    run_batch(manifest, out, "--no-adherence")
    first = summary_items(out)["horse"]["params_hash"]
    run_batch(manifest, out, "--no-adherence")
    assert summary_items(out)["horse"]["params_hash"] == first
    Image.fromarray(np.full((40, 48), 90, np.uint8)).save(tmp_path / "maps/depth/horse.png")
    run_batch(manifest, out, "--no-adherence")
    assert summary_items(out)["horse"]["params_hash"] != first


# --- review ----------------------------------------------------------------------------------------


def page_item(out: Path, item_id: str) -> dict:
    """An item as the review page's data holds it."""
    data = json.loads((out / "review" / "data.js").read_text().removeprefix("window.RR_REVIEW = ").rstrip(";\n"))
    return next(item for item in data["items"] if item["id"] == item_id)


def test_the_review_page_shows_each_units_map_and_keeps_it_when_rebuilt(tmp_path: Path) -> None:
    items = [
        {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH]},
        {"id": "depth-only", "image": "horse.png", "controls": [{**DEPTH, "image": "maps/depth/horse.png"}]},
    ]
    out = tmp_path / "out"
    run_batch(units_manifest(tmp_path, items=items), out)
    folder = out / "review" / "items" / "horse"
    assert {"control-0-canny.jpg", "control-1-depth.jpg"} <= {path.name for path in folder.iterdir()}
    assert set(page_item(out, "horse")["assets"]) >= {"control-0-canny", "control-1-depth"}
    assert "scores" in page_item(out, "horse")  # against its canny unit
    assert "scores" not in page_item(out, "depth-only")  # a depth map is not edges: not scored

    for path in folder.glob("control-*"):
        path.unlink()
    (folder / "info.js").unlink()
    run_cli("review", out)  # made again from the item's recording
    assert {"control-0-canny.jpg", "control-1-depth.jpg"} <= {path.name for path in folder.iterdir()}
    assert set(page_item(out, "horse")["assets"]) >= {"control-0-canny", "control-1-depth"}

    rerun = run_batch(tmp_path / "manifest.yaml", out)  # the unscored item is up to date too
    assert "2 skipped (up to date)" in rerun.output, rerun.output


def test_compare_names_the_unit_that_changed(tmp_path: Path) -> None:
    item = {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH]}
    run_batch(units_manifest(tmp_path, items=[item]), tmp_path / "before", "--no-adherence")
    item["controls"][1] = {**DEPTH, "scale": 0.4}
    manifest = units_manifest(tmp_path, items=[item])
    Image.fromarray(np.full((40, 48), 90, np.uint8)).save(tmp_path / "maps/depth/horse.png")
    run_batch(manifest, tmp_path / "after", "--no-adherence")
    run_cli("compare", tmp_path / "before", tmp_path / "after", exit_code=None)
    report = (tmp_path / "after" / "compare" / "compare.md").read_text()
    assert "changed" in report and "made another way: controls.1-depth.scale 0.8 → 0.4" in report, report
    assert "controls.1-depth's map content" in report


def test_fetch_downloads_the_controlnets_a_manifests_units_name(
    tmp_path: Path,
    model_folders: dict[str, Path],  # noqa: F811 - test_model_downloads' fixture
) -> None:
    from hub_stand_in import StandInHub, hub_env
    from test_model_downloads import SD15, SD15_CONTROLNET, cli, snapshot_files

    repos = {
        SD15: model_folders["base"],
        SD15_CONTROLNET: model_folders["controlnet"],
        "example/depth": model_folders["controlnet"],
    }
    items = [{"image": "horse.png", "controls": [{"type": "canny"}, {**DEPTH, "model": "example/depth"}]}]
    manifest = units_manifest(tmp_path, model="sd15", items=items)
    with StandInHub(repos) as hub:
        result = cli(hub_env(hub.url, tmp_path / "hf"), "fetch", str(manifest), "--dtype", "fp16")
    assert result.returncode == 0, result.stderr
    assert f"{manifest} depth unit example/depth: ready in the cache (1 repo, fp16 weights" in result.stderr
    assert snapshot_files(tmp_path / "hf", "example/depth")

    # `models MANIFEST` lists the unit's ControlNet beside the model's components, cached now.
    with StandInHub(repos) as hub:
        listed = cli(hub_env(hub.url, tmp_path / "hf"), "models", str(manifest), "--dtype", "fp16", "--json")
    rows = {row["component"]: row for row in json.loads(listed.stdout)["components"]}
    assert (rows["depth unit"]["source"], rows["depth unit"]["cached"]) == ("example/depth", True)
    assert rows["depth unit"]["model"] == str(manifest) and {"base", "controlnet"} <= set(rows)


# --- the JSON Schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["scale", "start", "end", "low", "high"])
def test_the_schemas_unit_bounds_are_the_loaders(tmp_path: Path, field: str) -> None:
    from jsonschema import Draft202012Validator

    from rr_controlnet.errors import ManifestError
    from rr_controlnet.manifest.schema import manifest_json_schema

    validator = Draft202012Validator(manifest_json_schema())
    unit_schema = manifest_json_schema()["properties"]["defaults"]["properties"]["controls"]["items"]
    low, high = unit_schema["properties"][field]["minimum"], unit_schema["properties"][field]["maximum"]
    for value in (low - 1, low, high, high + 1):
        document = {
            "version": 1,
            "model": "tiny-sd15",
            "items": [{"image": "horse.png", "controls": [{"type": "canny", field: value}]}],
        }
        path = write_manifest(tmp_path, document)
        try:
            load_manifest(path, check_images=False)
            loader = True
        except ManifestError as error:
            own = [problem.message for problem in error.problems if f"controls[0].{field} must be" in problem.message]
            loader = not [message for message in own if " must be below " not in message]  # across fields aside
        assert validator.is_valid(document) == loader, (field, value)


def test_the_schema_takes_a_units_sweep_and_refuses_an_unknown_unit_field() -> None:
    from jsonschema import Draft202012Validator

    from rr_controlnet.manifest.schema import manifest_json_schema

    validator = Draft202012Validator(manifest_json_schema())
    item = {"image": "horse.png", "controls": [{"type": "depth", "image": "maps/{id}.png"}]}
    assert validator.is_valid({"version": 1, "items": [{**item, "sweep": {"controls.0.scale": [0.5, 1]}}]})
    assert not validator.is_valid({"version": 1, "items": [{**item, "sweep": {"controls.0.colour": [1]}}]})
    assert not validator.is_valid({"version": 1, "items": [{**item, "controls": [{"type": "depth", "weight": 1}]}]})
    assert not validator.is_valid({"version": 1, "items": [{**item, "controls": [{"type": "canny"}] * 5}]})


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"_class_name": "FluxControlNetModel"}, "flux"),
        ({"_class_name": "FluxControlNetModel", "num_mode": 7}, "flux-union"),
        ({"_class_name": "ControlNetUnionModel"}, "sdxl-union"),
        ({}, None),  # no class named: not a control model's
        ({"_class_name": "SD3ControlNetModel"}, "sd3"),
        ({"_class_name": "ControlNetModel", "addition_embed_type": "text_time"}, "sdxl"),
        ({"_class_name": "ControlNetModel"}, "sd15"),
    ],
)
def test_a_local_unit_models_family_is_read_from_its_config(tmp_path: Path, config: dict, family: str) -> None:
    from rr_controlnet.models.control_models import model_family

    (tmp_path / "config.json").write_text(json.dumps(config))
    assert model_family(str(tmp_path)) == family


@pytest.mark.parametrize(
    "model", ["tiny-sd15", "tiny-sdxl", "tiny-flux", "tiny-sd3", "tiny-sdxl-union", "tiny-flux-union"]
)
def test_items_with_units_share_a_pipeline_call_and_draw_what_they_draw_alone(tmp_path: Path, model: str) -> None:
    units = [{"type": "canny"}, DEPTH]
    items = [{"image": "horse.png", "controls": units}, {"image": "astronaut.png", "controls": units, "seed": 3}]
    manifest = units_manifest(tmp_path, model=model, items=items)
    run_batch(manifest, tmp_path / "alone", "--no-adherence")
    together = run_batch(manifest, tmp_path / "together", "--no-adherence", "--batch-size", "2")
    assert "2 done" in together.output
    for item_id in ("horse", "astronaut"):
        alone = output_pixels(tmp_path / "alone", item_id).astype(int)
        shared = output_pixels(tmp_path / "together", item_id).astype(int)
        assert np.abs(alone - shared).max() <= 2, item_id


# --- units on a union model ------------------------------------------------------------------------

# Each union preset with its model's modes for a canny and a depth unit (families.XINSIR_UNION_MODES,
# SHAKKER_FLUX_UNION_MODES).
UNION_MODES = [("tiny-sdxl-union", [3, 1]), ("tiny-flux-union", [0, 2])]


class PipelineCalls:
    """Each call of a pipeline class (a spy on it): its arguments and the ControlNet it ran; the call goes on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, family: str):
        from rr_controlnet.models.component_sources import pipeline_class

        self.arguments: list[dict] = []
        self.controlnets: list = []
        pipeline = pipeline_class(family)
        original = pipeline.__call__

        def spy(pipe, *args, **kwargs):
            self.arguments.append(kwargs)
            self.controlnets.append(pipe.controlnet)
            return original(pipe, *args, **kwargs)

        monkeypatch.setattr(pipeline, "__call__", spy)


@pytest.mark.parametrize(("model", "modes"), UNION_MODES)
def test_units_on_a_union_model_run_in_the_modes_of_their_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, modes: list[int]
) -> None:
    items = [
        {
            "id": "both",
            "image": "horse.png",
            "controls": [{"type": "canny"}, {**DEPTH, "image": "maps/depth/horse.png"}],
        },
        {"id": "canny", "image": "horse.png", "controls": [{"type": "canny"}]},
        {"id": "plain", "image": "horse.png"},
    ]
    manifest = units_manifest(tmp_path, model=model, items=items)
    calls = PipelineCalls(monkeypatch, load_manifest(manifest).model.family)
    run_batch(manifest, tmp_path / "out", "--no-adherence")
    both, canny, plain = calls.arguments
    assert both["control_mode"] == modes
    assert (both["controlnet_conditioning_scale"], both["control_guidance_end"]) == ([0.5, 0.8], [1.0, 1.0])
    # SDXL's union pipeline takes a list of modes even for one; Flux's takes one unit's mode as an int
    assert canny["control_mode"] == plain["control_mode"] == ([modes[0]] if model == "tiny-sdxl-union" else modes[0])
    assert len({id(controlnet) for controlnet in calls.controlnets[1:]}) == 1  # the loaded pipeline's own model
    nets = getattr(calls.controlnets[0], "nets", [calls.controlnets[0]])
    assert len(nets) == 1 and nets[0] is calls.controlnets[1]  # one union model runs both units
    out = tmp_path / "out"
    assert not np.array_equal(output_pixels(out, "both"), output_pixels(out, "canny"))  # the depth unit acts
    recorded = summary_items(out)["both"]["params"]["controls"]
    assert [unit["mode"] for unit in recorded.values()] == modes
    depth = f"Module: depth, Model: {model}, Control Mode: {modes[1]}, Weight: 0.8"
    assert depth in Image.open(out / "both.png").text["parameters"]
    recorded_text = read_recording(out / "both.rrd").static("/items/both/params").columns["TextDocument:text"][0]
    assert depth in str(recorded_text)


@pytest.mark.parametrize(
    ("model", "known"),
    [("tiny-sdxl-union", "openpose, pose, depth, hed"), ("tiny-flux-union", "canny, tile, depth, blur")],
)
def test_a_unit_type_the_union_model_has_no_mode_for_is_refused_in_validate(
    tmp_path: Path, model: str, known: str
) -> None:
    controls = [
        {"type": "canny"},
        {"type": "thermal", "image": "horse.png"},
        {"type": "depth", "image": "horse.png", "model": "tiny-sdxl"},
    ]
    swept = {"id": "swept", "image": "horse.png", "controls": [{"type": "canny"}], "sweep": {"controls.0.model": ["a"]}}
    manifest = units_manifest(tmp_path, model=model, items=[{"image": "horse.png", "controls": controls}, swept])
    result = run_cli("validate", manifest, exit_code=2)
    family = model.removeprefix("tiny-")
    line = document_line(manifest, "thermal", 1)
    assert (
        f"{manifest}:{line}: item 'horse' (#1): controls[1].type 'thermal': the union model {model} ({family}) has no "
        f"mode for it; it knows {known}"
    ) in result.output
    assert (
        f"controls[2].model: the union model {model} ({family}) runs every unit itself, in the mode of the unit's "
        "type; leave model out"
    ) in result.output
    assert f"sweep.controls.0.model: a union model ({family}) runs every unit itself; a unit's model cannot vary" in (
        result.output
    )
    assert "3 problems" in result.output
