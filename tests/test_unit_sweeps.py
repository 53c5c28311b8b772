"""A sweep of an item's value reaches the control units that leave that value out, as the item's own value
does; a unit that sets its own keeps it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import run_batch, run_cli, summary_items
from test_control_units import DEPTH, output_pixels, units_manifest

from rr_controlnet.manifest.document import load_manifest


@pytest.mark.parametrize(
    ("field", "values", "unit_field"),
    [
        ("controlnet_conditioning_scale", [0.1, 2.0], "scale"),
        ("control_guidance_start", [0.0, 0.5], "start"),
        ("control_guidance_end", [0.25, 1.0], "end"),
        ("canny.low", [10, 150], "low"),
        ("canny.high", [120, 250], "high"),
    ],
)
def test_a_bare_unit_takes_each_variants_swept_item_value(
    tmp_path: Path, field: str, values: list, unit_field: str
) -> None:
    item = {"image": "horse.png", "controls": [{"type": "canny"}, DEPTH], "sweep": {field: values}}
    variants = load_manifest(units_manifest(tmp_path, items=[item])).items
    assert [getattr(variant.controls[0], unit_field) for variant in variants] == values
    if unit_field in ("start", "end"):  # the depth unit sets only its scale
        assert [getattr(variant.controls[1], unit_field) for variant in variants] == values


def test_a_swept_canny_pair_reaches_the_thresholds_a_unit_leaves_out(tmp_path: Path) -> None:
    item = {
        "image": "horse.png",
        "controls": [{"type": "canny", "low": 5}],
        "sweep": {"canny": [{"low": 10, "high": 90}, {"low": 20, "high": 180}]},
    }
    variants = load_manifest(units_manifest(tmp_path, items=[item])).items
    assert [(variant.controls[0].low, variant.controls[0].high) for variant in variants] == [(5, 90), (5, 180)]


def test_units_from_the_defaults_take_the_items_swept_value(tmp_path: Path) -> None:
    item = {"image": "horse.png", "sweep": {"controlnet_conditioning_scale": [0.1, 2.0]}}
    manifest = units_manifest(tmp_path, items=[item], controls=[{"type": "canny"}, DEPTH])
    variants = load_manifest(manifest).items
    assert [[unit.scale for unit in variant.controls] for variant in variants] == [[0.1, 0.8], [2.0, 0.8]]


def test_a_unit_that_takes_a_swept_value_is_checked_per_variant(tmp_path: Path) -> None:
    item = {"image": "horse.png", "canny": {"low": 250}, "controls": [{"type": "canny"}]}
    item["sweep"] = {"canny.high": [255]}  # the item's high (200) alone would be below its low
    (variant,) = load_manifest(units_manifest(tmp_path, items=[item])).items
    assert (variant.controls[0].low, variant.controls[0].high) == (250, 255)
    item["sweep"] = {"canny.high": [255, 240]}
    result = run_cli("validate", units_manifest(tmp_path, items=[item]), exit_code=2)
    assert "item 'horse_high240' (#1): controls[0].low must be below its high, got 250 >= 240" in result.output


def test_a_sweep_no_unit_takes_is_refused_with_its_line(tmp_path: Path) -> None:
    items = [
        {
            "image": "horse.png",
            "controls": [{"type": "canny", "scale": 0.9}, DEPTH],
            "sweep": {"controlnet_conditioning_scale": [0.1, 2.0]},
        },
        {"image": "astronaut.png", "controls": [DEPTH], "sweep": {"canny.low": [10, 150]}},
    ]
    result = run_cli("validate", units_manifest(tmp_path, items=items), exit_code=2)
    scale, low = result.output.splitlines()[:2]
    assert scale.endswith(
        "item 'horse' (#1): sweep.controlnet_conditioning_scale changes nothing: each of the item's units sets its "
        "own scale (or sweeps it); sweep controls.<index>.scale instead"
    )
    assert low.endswith(
        "item 'astronaut' (#2): sweep.canny.low changes nothing: none of the item's units is a canny unit"
    )
    assert scale.split(":")[1].isdigit() and low.split(":")[1].isdigit()  # file:line
    items[1]["sweep"] = {"zip": {"canny.low": [10, 150], "prompt": ["a horse", "a cave"]}}  # the prompts vary
    run_cli("validate", units_manifest(tmp_path, items=items[1:]))


def test_an_items_sweep_beside_a_sweep_of_the_same_unit_field_is_refused(tmp_path: Path) -> None:
    # The unit's own sweep sets its scale in every variant: the item's scale would draw duplicates.
    sweep = {"controlnet_conditioning_scale": [0.2, 0.8], "controls.0.scale": [0.3, 0.9]}
    item = {"image": "horse.png", "controls": [{"type": "canny"}], "sweep": sweep}
    result = run_cli("validate", units_manifest(tmp_path, items=[item]), exit_code=2)
    assert "sweep.controlnet_conditioning_scale changes nothing: each of the item's units sets its own scale" in (
        result.output
    )
    item["controls"].append({"type": "canny"})  # a second unit takes the item's scale: the variants differ
    run_cli("validate", units_manifest(tmp_path, items=[item]))


def test_a_typo_in_a_swept_unit_field_gets_the_closest_and_the_list_names_unit_fields(tmp_path: Path) -> None:
    item = {"image": "horse.png", "controls": [{"type": "canny"}], "sweep": {"controls.0.sclae": [0.1]}}
    result = run_cli("validate", units_manifest(tmp_path, items=[item]), exit_code=2)
    assert "unknown key 'sweep.controls.0.sclae' (did you mean 'sweep.controls.0.scale'?)" in result.output
    item["sweep"] = {"colour": [1]}
    result = run_cli("validate", units_manifest(tmp_path, items=[item]), exit_code=2)
    assert "sweep.controls.<index>.scale, sweep.controls.<index>.start" in result.output


def test_a_swept_scale_changes_a_bare_units_output_and_its_record(tmp_path: Path) -> None:
    item = {
        "image": "horse.png",
        "controls": [{"type": "canny"}],
        "sweep": {"controlnet_conditioning_scale": [0.1, 2.0]},
    }
    out = tmp_path / "out"
    run_batch(units_manifest(tmp_path, items=[item]), out, "--no-adherence", "--threads", "1")
    entries = summary_items(out)
    low, high = entries["horse_ccs0.1"], entries["horse_ccs2"]
    assert low["params"]["controls"]["0-canny"]["scale"] == 0.1
    assert high["params"]["controls"]["0-canny"]["scale"] == 2.0
    assert not np.array_equal(output_pixels(out, "horse_ccs0.1"), output_pixels(out, "horse_ccs2"))
