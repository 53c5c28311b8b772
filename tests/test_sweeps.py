"""Sweeps: one item, many variants; expansion, ids, limits, bad sweeps, and a sweep run end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import blueprint_views, read_recording, run_cli, sample_image, tiny_manifest, write_manifest
from PIL import Image

from rr_controlnet.errors import ManifestError
from rr_controlnet.manifest.document import load_manifest
from rr_controlnet.manifest.overrides import Overrides
from rr_controlnet.outputs import ItemOutcome


def manifest_with(folder: Path, sweep: dict | None = None, item_sweep: dict | None = None, **item) -> Path:
    sample_image("horse.png", folder)
    defaults = {"steps": 2, "size": 64, **({"sweep": sweep} if sweep else {})}
    entry = {"image": "horse.png", **item, **({"sweep": item_sweep} if item_sweep else {})}
    return write_manifest(folder, {"version": 1, "model": "tiny-sd15", "defaults": defaults, "items": [entry]})


def expanded(folder: Path, **kwargs) -> list[tuple[str, dict]]:
    return [(item.id, item.sweep.values) for item in load_manifest(manifest_with(folder, **kwargs)).items]


def test_axes_combine_as_a_product_and_name_the_variants(tmp_path: Path) -> None:
    items = load_manifest(
        manifest_with(tmp_path, item_sweep={"controlnet_conditioning_scale": [0.5, 1], "seed": {"count": 2}}, seed=7)
    ).items
    assert [item.id for item in items] == [
        "horse_seed7_ccs0.5",
        "horse_seed8_ccs0.5",
        "horse_seed7_ccs1",
        "horse_seed8_ccs1",
    ]
    assert [(item.params.controlnet_conditioning_scale, item.params.seed) for item in items] == [
        (0.5, 7), (0.5, 8), (1.0, 7), (1.0, 8),
    ]  # fmt: skip
    assert [item.position for item in items] == [1, 2, 3, 4] and {item.index for item in items} == {1}
    sweep = items[2].sweep
    assert (sweep.source, sweep.coordinates, sweep.shape) == ("horse", (1, 0), (2, 2))
    assert sweep.axes == (("controlnet_conditioning_scale",), ("seed",))


def test_zip_pairs_lists_before_the_product(tmp_path: Path) -> None:
    sweep = {"zip": {"prompt": ["a castle", "a cave"], "negative_prompt": ["fog", "light"]}, "seed": [1, 2]}
    items = load_manifest(manifest_with(tmp_path, item_sweep=sweep)).items
    assert [(item.params.prompt, item.params.negative_prompt, item.params.seed) for item in items] == [
        ("a castle", "fog", 1), ("a castle", "fog", 2), ("a cave", "light", 1), ("a cave", "light", 2),
    ]  # fmt: skip
    assert items[0].id.startswith("horse_p") and len({item.id for item in items}) == 4


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        ({"from": 0.2, "to": 0.5, "step": 0.1}, [0.2, 0.3, 0.4, 0.5]),
        ({"from": 0, "to": 1, "step": 0.3}, [0.0, 0.3, 0.6, 0.9]),  # 1.0 is not on a step
        ({"from": 1, "to": 0, "step": -0.25}, [1.0, 0.75, 0.5, 0.25, 0.0]),
        ({"from": 0, "to": 1, "count": 5}, [0.0, 0.25, 0.5, 0.75, 1.0]),
        ({"from": 0.5, "to": 0.5, "count": 1}, [0.5]),
    ],
)
def test_ranges(tmp_path: Path, spec: dict, values: list) -> None:
    found = expanded(tmp_path, item_sweep={"controlnet_conditioning_scale": spec})
    assert [swept["controlnet_conditioning_scale"] for _, swept in found] == values


def test_seed_counts_start_at_the_base_seed_the_command_line_included(tmp_path: Path) -> None:
    path = manifest_with(tmp_path, item_sweep={"seed": {"count": 3}}, seed=7)
    assert [item.params.seed for item in load_manifest(path).items] == [7, 8, 9]
    assert [item.params.seed for item in load_manifest(path, Overrides(seed=20)).items] == [20, 21, 22]


def test_an_items_sweep_extends_the_defaults_and_wins_per_field(tmp_path: Path) -> None:
    found = expanded(
        tmp_path, sweep={"seed": [1, 2], "steps": [2, 3]}, item_sweep={"steps": [4], "canny.low": [10, 20]}
    )
    assert [tuple(swept.items()) for _, swept in found] == [
        (("seed", 1), ("steps", 4), ("canny.low", 10)),
        (("seed", 1), ("steps", 4), ("canny.low", 20)),
        (("seed", 2), ("steps", 4), ("canny.low", 10)),
        (("seed", 2), ("steps", 4), ("canny.low", 20)),
    ]


def test_ids_do_not_depend_on_the_order_of_fields_or_values(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = {item_id for item_id, _ in expanded(tmp_path / "a", item_sweep={"seed": [1, 2], "guidance_scale": [3, 5]})}
    second = {item_id for item_id, _ in expanded(tmp_path / "b", item_sweep={"guidance_scale": [5, 3], "seed": [2, 1]})}
    assert first == second == {"horse_seed1_cfg3", "horse_seed2_cfg3", "horse_seed1_cfg5", "horse_seed2_cfg5"}


def test_canny_variants_read_low_then_high_as_the_manifest_writes_them(tmp_path: Path) -> None:
    from rr_controlnet.manifest.sweep_names import label, value_text

    canny = [{"low": 50, "high": 150}, {"high": 200, "low": 100}]
    assert [item_id for item_id, _ in expanded(tmp_path, item_sweep={"canny": canny})] == [
        "horse_canny50-150",
        "horse_canny100-200",
    ]
    assert label("canny", canny[1]) == "canny 100/200" and value_text(canny[1]) == "100/200"
    assert [value_text(value) for value in (0.5, True, [512, 768], "a castle")] == [
        "0.5",
        "true",
        "512x768",
        "a castle",
    ]


def test_the_expansion_is_bounded_before_anything_is_built(tmp_path: Path) -> None:
    path = manifest_with(tmp_path, item_sweep={"seed": {"count": 1000}, "steps": {"from": 1, "to": 1000, "step": 1}})
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    (problem,) = raised.value.problems
    assert str(problem).endswith(
        "item 'horse' (#1): sweeps expand the manifest to 1,000,000 variants, more than the limit of 10,000 "
        "(this item's sweep alone gives 1,000,000); sweep fewer values or raise --max-items"
    )


BAD_SWEEPS = [
    (
        {"guidance": [1]},
        "m.yaml:6: item 'horse' (#1): unknown key 'sweep.guidance' (did you mean 'sweep.guidance_scale'?)",
    ),
    (
        {"id": ["a", "b"]},
        "m.yaml:6: item 'horse' (#1): sweep.id cannot be swept: each variant's id is made from its source's and its values",
    ),
    ({"image": ["a.png"]}, "m.yaml:6: item 'horse' (#1): sweep.image cannot be swept: give each image an item"),
    ({"seed": []}, "m.yaml:6: item 'horse' (#1): sweep.seed: an empty list gives no variants"),
    ({"steps": {"from": 1, "to": 9, "step": 0}}, "m.yaml:6: item 'horse' (#1): sweep.steps: step must not be 0"),
    (
        {"steps": {"from": 10, "to": 1, "step": 2}},
        "m.yaml:6: item 'horse' (#1): sweep.steps: step 2 moves away from 1: its sign must be that of to - from",
    ),
    (
        {"steps": {"from": 1, "to": 2, "stp": 1}},
        "m.yaml:6: item 'horse' (#1): sweep.steps: a range takes from, to and step or count; unknown key 'stp'",
    ),
    (
        {"guidance_scale": {"count": 3}},
        "m.yaml:6: item 'horse' (#1): sweep.guidance_scale: a range needs from and to (only seed takes count alone: seeds base..base+count-1)",
    ),
    (
        {"controlnet_conditioning_scale": [0.5, 9]},
        "m.yaml:8: item 'horse' (#1): sweep.controlnet_conditioning_scale must be a number 0..5, got 9",
    ),
    ({"canny.low": [10, 300]}, "m.yaml:8: item 'horse' (#1): sweep.canny.low must be an integer 0..255, got 300"),
    (
        {"steps": {"from": 1, "to": 2, "count": 3}},
        "m.yaml:6: item 'horse' (#1): sweep.steps: gives values that are not integers: 1.5",
    ),
    ({"seed": [1, 1]}, "m.yaml:6: item 'horse' (#1): sweep.seed lists 1 more than once"),
    (
        {"zip": {"prompt": ["a", "b"], "negative_prompt": ["c"]}},
        "m.yaml:7: item 'horse' (#1): sweep.zip lists must have the same length, got prompt 2, negative_prompt 1",
    ),
    (
        {"resize": "fit"},
        "m.yaml:6: item 'horse' (#1): sweep.resize must be a list of values or a range {from, to, step or count}, got 'fit'",
    ),
    (
        {"canny.low": [150, 250]},
        "m.yaml:6: item 'horse_low250' (#1): canny.low must be below canny.high, got 250 >= 200",
    ),
]


@pytest.mark.parametrize(("sweep", "expected"), BAD_SWEEPS)
def test_bad_sweeps_are_reported_with_their_line(tmp_path: Path, sweep: dict, expected: str) -> None:
    sample_image("horse.png", tmp_path)
    text = "version: 1\nmodel: tiny-sd15\nitems:\n  - image: horse.png\n    sweep:\n" + "".join(
        f"      {line}\n" for line in yaml.safe_dump(sweep, default_flow_style=False, sort_keys=False).splitlines()
    )
    (tmp_path / "m.yaml").write_text(text)
    result = run_cli("validate", str(tmp_path / "m.yaml"), exit_code=None)
    assert result.exit_code == 2
    assert result.output.splitlines()[0].replace(str(tmp_path / "m.yaml"), "m.yaml") == expected, text


def test_validate_says_what_the_manifest_expands_to(tmp_path: Path) -> None:
    path = manifest_with(tmp_path, item_sweep={"seed": {"count": 3}})
    result = run_cli("validate", str(path), exit_code=None)
    assert result.exit_code == 0 and "ok, 3 items (3 sweep variants of 1 item)" in result.output
    result = run_cli("validate", str(path), "--max-items", "2", exit_code=None)
    assert result.exit_code == 2 and "more than the limit of 2" in result.output
    plain = tiny_manifest(tmp_path, items=[{"id": f"h{n}", "image": "horse.png"} for n in range(5)])
    assert run_cli("validate", str(plain), "--max-items", "2", exit_code=None).exit_code == 0  # no sweep, no bound


# --- a sweep, run ---------------------------------------------------------------------------------

SWEEP = {"controlnet_conditioning_scale": [0.5, 1.0], "seed": [1, 2]}
VARIANTS = ["horse_seed1_ccs0.5", "horse_seed2_ccs0.5", "horse_seed1_ccs1", "horse_seed2_ccs1"]


def run(*args: str):
    result = run_cli("batch", *args, exit_code=None)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def swept_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sweep")
    manifest = tiny_manifest(folder, items=[{"image": "horse.png", "sweep": SWEEP}, {"image": "astronaut.png"}])
    run(str(manifest), "--out", str(folder / "out"), "--threads", "1")
    return manifest, folder / "out"


def test_each_variant_is_an_item_that_records_its_source_and_values(swept_batch: tuple[Path, Path]) -> None:
    _, out = swept_batch
    summary = json.loads((out / "summary.json").read_text())
    assert [item["id"] for item in summary["items"]] == [*VARIANTS, "astronaut"]
    variant = summary["items"][2]
    assert variant["sweep"]["source"] == "horse" and variant["sweep"]["values"] == {
        "controlnet_conditioning_scale": 1.0,
        "seed": 1,
    }
    assert variant["params"]["controlnet_conditioning_scale"] == 1.0 and variant["seed"] == 1
    params = (
        read_recording(out / "horse_seed1_ccs1.rrd")
        .static("/items/horse_seed1_ccs1/params")
        .columns["TextDocument:text"][0]
    )
    assert "| sweep of | horse |" in params and "| swept: controlnet_conditioning_scale | 1.0 |" in params
    markdown = (out / "summary.md").read_text()
    assert "**horse**: 4 variants of controlnet_conditioning_scale x seed" in markdown
    assert "| horse_seed1_ccs1 | 1.0 | 1 | done |" in markdown


def test_the_blueprint_lays_each_sweep_out_as_a_grid(swept_batch: tuple[Path, Path]) -> None:
    _, out = swept_batch
    for source in (out / "batch.rbl", out / "horse_seed1_ccs0.5.rrd"):
        views = blueprint_views(source)
        assert views["horse: input"] == ("2D", "items/horse_seed1_ccs0.5/input/image")
        assert views["ccs 0.5, seed 2"] == ("2D", "items/horse_seed2_ccs0.5/output")
        assert views["ccs 1, seed 1 (preview)"] == ("2D", "items/horse_seed1_ccs1/preview")
        assert views["astronaut: output"] == ("2D", "items/astronaut/output")
        assert not any(name.startswith("horse_seed") for name in views)  # no tab per variant


def test_the_contact_sheet_draws_the_sweep_as_a_labelled_grid(swept_batch: tuple[Path, Path]) -> None:
    _, out = swept_batch
    pages = sorted(path.name for path in out.glob("overview*.png"))
    assert pages == ["overview-001.png", "overview-002.png"]  # the plain item, then the sweep's grid
    grid = Image.open(out / "overview-002.png")
    assert grid.width > 3 * 160 and grid.height > 2 * 160  # input column beside 2 x 2 cells
    assert np.asarray(grid).std() > 10


def test_wide_images_stay_inside_their_cells_clear_of_the_labels(tmp_path: Path) -> None:
    from rr_controlnet.review.sweep_sheet import CELL, sweep_sheet

    red = Image.new("RGB", (200, 50), (255, 0, 0))  # wider than a cell, as a panorama would be
    red.save(tmp_path / "input.png")
    entries = []
    for row in range(2):
        for column in range(2):
            item_id = f"p_ccs{row}_seed{column}"
            red.save(tmp_path / f"{item_id}.png")
            sweep = {
                "source": "p",
                "values": {"controlnet_conditioning_scale": 0.5 + row, "seed": column},
                "axes": [["controlnet_conditioning_scale"], ["seed"]],
                "coordinates": [row, column],
                "shape": [2, 2],
            }
            entries.append(
                {"id": item_id, "status": "done", "image": str(tmp_path / "input.png"), "files": [f"{item_id}.png"],
                 "sweep": sweep}
            )  # fmt: skip
    sheet = np.asarray(sweep_sheet([ItemOutcome.from_document(entry) for entry in entries], tmp_path, None)).astype(int)
    red_pixels = (sheet[..., 0] > 200) & (sheet[..., 1] < 60) & (sheet[..., 2] < 60)
    side_column = CELL + 16  # the input and edge map, then the row labels
    columns_with_red = np.flatnonzero(red_pixels.any(axis=0))
    labels = [x for x in range(side_column, columns_with_red.max()) if not red_pixels[:, x].any()]
    assert columns_with_red.min() < CELL and labels[0] <= side_column  # the input fits its column
    assert len(labels) >= 40  # a strip for "ccs 0.5" that no image covers


def test_editing_one_swept_value_regenerates_only_its_variants(swept_batch: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, out = swept_batch
    shutil.copytree(out, tmp_path / "out")
    document = yaml.safe_load(manifest.read_text())
    document["items"][0]["sweep"]["controlnet_conditioning_scale"] = [0.5, 1.5]
    manifest.with_name("edited.yaml").write_text(yaml.safe_dump(document))
    result = run(str(manifest.with_name("edited.yaml")), "--out", str(tmp_path / "out"), "--threads", "1")
    assert "5 done, 0 failed, 0 pending, 3 skipped (up to date)" in result.output  # ccs 0.5 twice, astronaut


def test_batch_size_groups_the_variants_that_share_a_pipeline_call(
    swept_batch: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rr_controlnet.run import runner

    manifest, solo = swept_batch
    calls: list[list[str]] = []
    generate = runner.generate

    def spy(model, jobs, *args, **kwargs):
        calls.append([job.item_id for job in jobs])
        return generate(model, jobs, *args, **kwargs)

    monkeypatch.setattr(runner, "generate", spy)
    run(str(manifest), "--out", str(tmp_path / "out"), "--threads", "1", "--batch-size", "4")
    # The seeds of one conditioning scale share a call; another scale or another image does not.
    assert calls == [VARIANTS[:2], VARIANTS[2:], ["astronaut"]]
    for item_id in [*VARIANTS, "astronaut"]:
        batched = np.asarray(Image.open(tmp_path / "out" / f"{item_id}.png")).astype(int)
        alone = np.asarray(Image.open(solo / f"{item_id}.png")).astype(int)
        assert np.abs(batched - alone).max() <= 2, item_id  # the tolerance of batched vs solo runs


def test_a_sweep_across_two_shards_equals_one_process(swept_batch: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, expected = swept_batch
    out = tmp_path / "out"
    run(str(manifest), "--out", str(out), "--shard", "0/2", "--threads", "1")
    run(str(manifest), "--out", str(out), "--shard", "1/2", "--threads", "1")
    assert run_cli("summarize", str(out), exit_code=None).exit_code == 0
    for item_id in [*VARIANTS, "astronaut"]:
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / f"{item_id}.png")), np.asarray(Image.open(expected / f"{item_id}.png"))
        )
    assert blueprint_views(out / "batch.rbl") == blueprint_views(expected / "batch.rbl")


# --- values as written, bounds before building, grids that stay whole ------------------------------


def test_large_integers_stay_integers_in_ids_labels_and_summaries(tmp_path: Path) -> None:
    from rr_controlnet.manifest.sweep_names import label

    items = load_manifest(manifest_with(tmp_path, item_sweep={"seed": [1_000_000, 2_000_000, 10**15]})).items
    assert [item.id for item in items] == ["horse_seed1000000", "horse_seed2000000", "horse_seed1000000000000000"]
    assert label("seed", 1_000_000) == "seed 1000000"
    close = load_manifest(manifest_with(tmp_path, item_sweep={"guidance_scale": [7.1234567, 7.1234568]})).items
    assert [item.id for item in close] == ["horse_cfg7.1234567", "horse_cfg7.1234568"]
    assert label("guidance_scale", 7.5) == "cfg 7.5"  # short where short is exact


def test_a_range_is_counted_before_any_value_is_built(tmp_path: Path) -> None:
    for count, sweep in ((500_001, {"from": 0, "to": 500_000, "step": 1}), (5 * 10**9, {"count": 5 * 10**9})):
        path = manifest_with(tmp_path, item_sweep={"seed": sweep})
        with pytest.raises(ManifestError) as raised:
            load_manifest(path)
        (problem,) = raised.value.problems
        assert problem.message == (
            f"sweep.seed: gives {count:,} values, more than the limit of 10,000 variants "
            "(sweep fewer values or raise --max-items)"
        )


def test_seeds_near_the_top_of_the_range_are_exact(tmp_path: Path) -> None:
    top = 2**63 - 1
    items = load_manifest(manifest_with(tmp_path, item_sweep={"seed": {"from": top - 4, "to": top, "count": 3}})).items
    assert [item.params.seed for item in items] == [top - 4, top - 2, top]


def test_every_problem_at_once_and_shared_ones_once(tmp_path: Path) -> None:
    sample_image("horse.png", tmp_path)
    text = """version: 1
model: tiny-sd15
defaults:
  canny: {low: 220, high: 100}
  steps: 0
items:
  - image: horse.png
    guidance_scale: 99
    sweep:
      seed: {count: 2000}
      control_guidance_start: [0.2, 0.9]
      control_guidance_end: [0.5]
      zip: {seed: [1, 2], prompt: [a, b]}
  - image: horse.png
    id: other
    sweep:
      steps: [2, x]
"""
    (tmp_path / "m.yaml").write_text(text)
    result = run_cli("validate", str(tmp_path / "m.yaml"), exit_code=None)
    assert result.exit_code == 2
    lines = [line.replace(str(tmp_path / "m.yaml"), "m.yaml") for line in result.output.splitlines()]
    assert lines == [
        "m.yaml:4: defaults: canny.low must be below canny.high, got 220 >= 100",
        "m.yaml:5: defaults: steps must be an integer 1..1000, got 0",
        "m.yaml:8: item 'horse' (#1): guidance_scale must be a number 0..50, got 99",
        "m.yaml:10: item 'horse' (#1): sweep.seed is swept twice (alone and in zip, or in two zip groups)",
        "m.yaml:11: item 'horse' (#1): control_guidance_start must be below control_guidance_end, got 0.9 >= 0.5 "
        "(in 2,000 of its 4,000 variants, such as 'horse_seed0_start0.9_end0.5')",
        "m.yaml:17: item 'other' (#2): sweep.steps must be an integer 1..1000, got 'x'",
        "6 problems in m.yaml; nothing was generated",
    ]


def test_a_range_with_many_wrong_values_is_one_problem(tmp_path: Path) -> None:
    path = manifest_with(tmp_path, item_sweep={"steps": {"from": -500, "to": 10, "step": 1}})
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    (problem,) = raised.value.problems
    assert (
        problem.message == "sweep.steps must be an integer 1..1000, got -500 (and 500 more of the range's 511 values)"
    )


def test_a_rerun_after_a_value_is_inserted_keeps_every_grid_whole(swept_batch: tuple[Path, Path], tmp_path) -> None:
    manifest, out = swept_batch
    shutil.copytree(out, tmp_path / "out")
    document = yaml.safe_load(manifest.read_text())
    document["items"][0]["sweep"]["controlnet_conditioning_scale"] = [0.25, 0.5, 1.0]  # 0.25 before the others
    manifest.with_name("inserted.yaml").write_text(yaml.safe_dump(document))
    result = run(str(manifest.with_name("inserted.yaml")), "--out", str(tmp_path / "out"), "--threads", "1")
    assert "2 skipped" not in result.output and "5 skipped (up to date)" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    places = {
        item["id"]: (tuple(item["sweep"]["coordinates"]), tuple(item["sweep"]["shape"]))
        for item in summary["items"]
        if item["sweep"]
    }
    assert places["horse_seed1_ccs0.5"] == ((1, 0), (3, 2))  # skipped, and moved down a row
    assert sorted(coordinates for coordinates, _ in places.values()) == [(r, c) for r in range(3) for c in range(2)]


@pytest.mark.parametrize(("swept", "own_edge_maps"), [("seed", False), ("canny.low", True), ("size", True)])
def test_a_sweep_page_shows_each_variants_own_edge_map_when_the_sweep_changes_it(
    tmp_path: Path, swept: str, own_edge_maps: bool
) -> None:
    from rr_controlnet.review.sweep_sheet import sweep_sheet

    Image.new("RGB", (64, 64), (90, 90, 90)).save(tmp_path / "input.png")
    values = {"seed": [1, 2], "canny.low": [50, 100], "size": [[64, 64], [96, 64]]}[swept]
    entries = [
        {
            "id": f"p_{position}",
            "status": "done",
            "image": str(tmp_path / "input.png"),
            "files": [],
            "sweep": {
                "source": "p",
                "values": {swept: value},
                "axes": [[swept]],
                "coordinates": [position],
                "shape": [2],
            },
        }
        for position, value in enumerate(values)
    ]
    asked: list[str] = []

    def canny_for(item_id: str) -> np.ndarray:
        asked.append(item_id)
        return np.zeros((64, 64), dtype=np.uint8)

    sweep_sheet([ItemOutcome.from_document(entry) for entry in entries], tmp_path, canny_for)
    assert asked == (["p_0", "p_1"] if own_edge_maps else ["p_0"])
