"""Manifest validation: every problem at once, one line each, with file, line, item and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import run_cli, sample_image
from PIL import Image

HEADER = "version: 1\nmodel: tiny-sd15\n"


def validate(folder: Path, text: str | bytes) -> tuple[int, list[str]]:
    path = folder / "m.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = run_cli("validate", str(path), exit_code=None)
    lines = [line.replace(str(path), "m.yaml") for line in result.output.strip().splitlines()]
    return result.exit_code, lines


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    sample_image("astronaut.png", tmp_path)
    sample_image("horse.png", tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


BAD_MANIFESTS = [
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    canny: {low: high}\n",
        "m.yaml:5: item 'astronaut' (#1): canny.low must be an integer 0..255, got 'high'",
        id="canny-type",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    canny: {low: 200, high: 100}\n",
        "m.yaml:5: item 'astronaut' (#1): canny.low must be below canny.high, got 200 >= 100",
        id="canny-order",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    canny: {low: 10, high: 300}\n",
        "m.yaml:5: item 'astronaut' (#1): canny.high must be an integer 0..255, got 300",
        id="canny-range",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    stpes: 20\n",
        "m.yaml:5: item 'astronaut' (#1): unknown key 'stpes' (did you mean 'steps'?)",
        id="unknown-key",
    ),
    pytest.param(
        HEADER + "defaults:\n  guidance: 5\nitems:\n  - image: astronaut.png\n",
        "m.yaml:4: defaults: unknown key 'guidance' (did you mean 'guidance_scale'?)",
        id="unknown-default",
    ),
    pytest.param(
        HEADER + "defaults:\n  id: shared\nitems:\n  - image: astronaut.png\n",
        "m.yaml:4: defaults: id is each item's own: set it on the items, not in defaults",
        id="id-in-defaults",
    ),
    pytest.param(
        "version: 1\nmodel:\n  base: ./models/none\n  controlnet: someone/canny\n  family: sd15\n"
        "items:\n  - image: astronaut.png\n",
        "m.yaml:3: model: model.base './models/none': no such file or folder ({folder}/models/none)",
        id="model-folder-missing",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    controlnet_conditioning_scale: true\n",
        "m.yaml:5: item 'astronaut' (#1): controlnet_conditioning_scale must be a number 0..5, got true",
        id="yaml-spelling-in-messages",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    steps: 0\n",
        "m.yaml:5: item 'astronaut' (#1): steps must be an integer 1..1000, got 0",
        id="steps-zero",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    steps: '20'\n",
        "m.yaml:5: item 'astronaut' (#1): steps must be an integer 1..1000, got '20'",
        id="steps-text",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    guidance_scale: -1\n",
        "m.yaml:5: item 'astronaut' (#1): guidance_scale must be a number 0..50, got -1",
        id="guidance-negative",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    controlnet_conditioning_scale: 9\n",
        "m.yaml:5: item 'astronaut' (#1): controlnet_conditioning_scale must be a number 0..5, got 9",
        id="conditioning-scale",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    control_guidance_start: 0.8\n    control_guidance_end: 0.2\n",
        "m.yaml:5: item 'astronaut' (#1): control_guidance_start must be below control_guidance_end, got 0.8 >= 0.2",
        id="guidance-window",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    width: 100000\n",
        "m.yaml:5: item 'astronaut' (#1): width must be an integer 8..4096, got 100000",
        id="width-limit",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    height: 500\n",
        "m.yaml:5: item 'astronaut' (#1): height must be a multiple of 8 (the models' VAE scale), got 500",
        id="height-multiple",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    size: -64\n",
        "m.yaml:5: item 'astronaut' (#1): size width must be an integer 8..4096, got -64",
        id="size-negative",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    seed: 9223372036854775808\n",
        "m.yaml:5: item 'astronaut' (#1): seed must be an integer 0..9223372036854775807, got 9223372036854775808",
        id="seed-range",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    resize: squash\n",
        "m.yaml:5: item 'astronaut' (#1): resize must be one of crop, fit, stretch, got 'squash'",
        id="resize-mode",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n  - image: astronaut.png\n",
        "m.yaml:5: item 'astronaut' (#2): id 'astronaut' is already used by item #1 (line 4); give each item a unique id",
        id="duplicate-derived-id",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: a, image: astronaut.png}\n  - {id: a, image: horse.png}\n",
        "m.yaml:5: item 'a' (#2): id 'a' is already used by item #1 (line 4); give each item a unique id",
        id="duplicate-id",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: ../escape, image: astronaut.png}\n",
        "m.yaml:4: item '../escape' (#1): id must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got '../escape'",
        id="id-path",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: '..', image: astronaut.png}\n",
        "m.yaml:4: item '..' (#1): id must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got '..'",
        id="id-dotdot",
    ),
    pytest.param(
        HEADER + "items:\n  - image: missing.png\n",
        "m.yaml:4: item 'missing' (#1): image file not found: {folder}/missing.png",
        id="image-missing",
    ),
    pytest.param(
        HEADER + "items:\n  - image: notes.txt\n",
        "m.yaml:4: item 'notes' (#1): not an image file: {folder}/notes.txt",
        id="image-not-an-image",
    ),
    pytest.param(
        HEADER + "items:\n  - image: .\n",
        "m.yaml:4: item #1: id derived from image '.' must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got ''",
        id="image-folder",
    ),
    pytest.param(
        "version: 1\nmodel: sdxxl\nitems:\n  - image: astronaut.png\n",
        "m.yaml:2: model: unknown model preset 'sdxxl' (did you mean 'sdxl'?)",
        id="unknown-preset",
    ),
    pytest.param(HEADER, "m.yaml:1: items is missing: list at least one item with an image", id="items-missing"),
    pytest.param(
        HEADER + "items: []\n", "m.yaml:3: items is empty: list at least one item with an image", id="items-empty"
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    prompt: [unclosed\n",
        "m.yaml:5: YAML syntax error: a flow sequence that starts here (column 13) is not closed: "
        "expected ',' or ']', but got '<stream end>' (line 6, column 1)",
        id="yaml-syntax",
    ),
    pytest.param(
        HEADER + 'items:\n  - image: "astronaut.png\n    seed: 1\n',
        "m.yaml:4: YAML syntax error: a quoted scalar that starts here (column 12) is not closed: "
        "found unexpected end of stream (line 6, column 1)",
        id="yaml-unclosed-quote",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n  seed: 1\n",
        "m.yaml:5: YAML syntax error: expected <block end>, but found '?' (check the indentation), "
        "while parsing a block collection that starts on line 4",
        id="yaml-indentation",
    ),
    pytest.param(
        HEADER + "items:\n  - image: !!python/object/apply:os.system ['touch pwned']\n",
        "m.yaml:4: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed (only plain YAML data)",
        id="python-tag",
    ),
    pytest.param(
        HEADER + "items:\n  - image: astronaut.png\n    seed: 1\n    seed: 2\n",
        "m.yaml:6: duplicate key 'seed' (first on line 5)",
        id="duplicate-key",
    ),
    pytest.param(
        b"version: 1\nitems:\n  - prompt: caf\xe9\n", "m.yaml:3: not UTF-8 text (byte 0xe9 at offset 33)", id="not-utf8"
    ),
    pytest.param(
        "version: 2\nmodel: tiny-sd15\nitems:\n  - image: astronaut.png\n",
        "m.yaml:1: version must be 1, got 2",
        id="version",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: " + "a" * 129 + ", image: astronaut.png}\n",
        "m.yaml:4: item '"
        + "a" * 37
        + "..."
        + "a" * 38
        + "' (#1): id is 129 characters long, at most 128 (it names the item's files)",
        id="id-too-long",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: .hidden, image: astronaut.png}\n",
        "m.yaml:4: item '.hidden' (#1): id '.hidden' must not start with '.' (its files would be hidden)",
        id="id-hidden",
    ),
    pytest.param(
        HEADER + "items:\n  - image: overview.png\n",
        "m.yaml:4: item 'overview' (#1): id derived from image 'overview.png' 'overview' is reserved: the batch "
        "writes files named overview.* itself; choose another id",
        id="id-reserved-derived",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: Summary, image: astronaut.png}\n",
        "m.yaml:4: item 'Summary' (#1): id 'Summary' is reserved: the batch writes files named summary.* itself; "
        "choose another id",
        id="id-reserved",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: overview-002, image: astronaut.png}\n",
        "m.yaml:4: item 'overview-002' (#1): id 'overview-002' is reserved: the batch writes files named "
        "overview-002.* itself; choose another id",
        id="id-reserved-page",
    ),
    pytest.param(
        HEADER + "items:\n  - {id: con, image: astronaut.png}\n",
        "m.yaml:4: item 'con' (#1): id 'con' is a device name on Windows, where its files could not be created; "
        "choose another id",
        id="id-windows-device",
    ),
    pytest.param(
        HEADER + "items:\n  - astronaut.png\n",
        "m.yaml:4: item #1: an item must be a mapping with an image, got 'astronaut.png'",
        id="scalar-item-line",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_MANIFESTS)
def test_bad_manifest_is_reported_in_one_exact_line(folder: Path, text: str, expected: str) -> None:
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[0] == expected.format(folder=folder)
    assert lines[-1].endswith("nothing was generated")
    assert not (folder / "pwned").exists()


def test_every_duplicate_key_is_reported(folder: Path) -> None:
    text = HEADER + "items:\n  - image: astronaut.png\n    seed: 1\n    seed: 2\n    steps: 3\n    steps: 4\n"
    code, lines = validate(folder, text)
    assert code == 2
    assert lines == [
        "m.yaml:6: duplicate key 'seed' (first on line 5)",
        "m.yaml:8: duplicate key 'steps' (first on line 7)",
        "2 problems in m.yaml; nothing was generated",
    ]


def test_duplicate_keys_are_reported_with_every_other_problem(folder: Path) -> None:
    text = HEADER + "items:\n  - image: astronaut.png\n    seed: 1\n    seed: 2\n    steps: 0\n"
    code, lines = validate(folder, text)
    assert code == 2
    assert lines == [
        "m.yaml:6: duplicate key 'seed' (first on line 5)",
        "m.yaml:7: item 'astronaut' (#1): steps must be an integer 1..1000, got 0",
        "2 problems in m.yaml; nothing was generated",
    ]


def test_aliases_cannot_blow_up_memory_or_messages(folder: Path) -> None:
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"{chr(98 + n)}: &{chr(98 + n)} [" + ", ".join([f"*{chr(97 + n)}"] * 10) + "]" for n in range(8)]
    text = HEADER + "\n".join(laughs) + "\nitems:\n  - image: astronaut.png\n    prompt: *i\n"
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[0].startswith(
        "m.yaml: YAML error: anchors and aliases expand this document to more than 100,000 values"
    )


def test_values_in_messages_are_shortened(folder: Path) -> None:
    text = (
        HEADER + "shared: &big [" + ", ".join(["word"] * 200) + "]\nitems:\n  - image: astronaut.png\n    seed: *big\n"
    )
    code, lines = validate(folder, text)
    assert code == 2
    assert any(
        line.endswith("seed must be an integer 0..9223372036854775807, got ['word', 'word', 'word', 'word', ...]")
        for line in lines
    )
    assert max(len(line) for line in lines) < 300


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    text = HEADER + (
        "defaults:\n  steps: 0\n"
        "items:\n"
        "  - image: astronaut.png\n    canny: {low: high}\n"
        "  - image: missing.png\n"
        "  - {id: 'bad id', image: horse.png, seed: -1}\n"
    )
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[:-1] == [
        "m.yaml:4: defaults: steps must be an integer 1..1000, got 0",
        "m.yaml:7: item 'astronaut' (#1): canny.low must be an integer 0..255, got 'high'",
        f"m.yaml:8: item 'missing' (#2): image file not found: {folder}/missing.png",
        "m.yaml:9: item 'bad id' (#3): id must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got 'bad id'",
        "m.yaml:9: item 'bad id' (#3): seed must be an integer 0..9223372036854775807, got -1",
    ]
    assert lines[-1] == "5 problems in m.yaml; nothing was generated"


def test_an_image_that_is_no_path_is_one_line_not_a_second_about_the_manifest(folder: Path) -> None:
    text = HEADER + "items:\n  - {id: a9, image: 5}\n  - {id: a10, image: null}\n  - {id: a11}\n"
    code, lines = validate(folder, text)
    assert code == 2
    assert lines == [
        "m.yaml:4: item 'a9' (#1): image must be a file path, got 5",
        "m.yaml:5: item 'a10' (#2): image must be a file path, got null",
        "m.yaml:6: item 'a11' (#3): image is required",
        "3 problems in m.yaml; nothing was generated",
    ]
    # Without an id, there is no id to derive from such an image: its own problem is the only line.
    code, lines = validate(folder, HEADER + "items:\n  - image: 5\n  - image: ''\n")
    assert lines == [
        "m.yaml:4: item #1: image must be a file path, got 5",
        "m.yaml:5: item #2: image must be a file path, got ''",
        "2 problems in m.yaml; nothing was generated",
    ]


def test_a_decompression_bomb_is_refused_without_decoding(folder: Path) -> None:
    # A 10000x10000 PNG of one colour is a few kilobytes on disk and 300 MB decoded.
    Image.new("L", (10000, 10000)).save(folder / "bomb.png")
    code, lines = validate(folder, HEADER + "items:\n  - image: bomb.png\n")
    assert code == 2
    assert (
        lines[0]
        == f"m.yaml:4: item 'bomb' (#1): image is 10000x10000, larger than 50,000,000 pixels: {folder}/bomb.png"
    )


def test_a_truncated_image_is_reported_before_any_model_loads(folder: Path) -> None:
    whole = (folder / "astronaut.png").read_bytes()
    (folder / "half.png").write_bytes(whole[: len(whole) // 2])  # a valid header, half the pixels
    code, lines = validate(folder, HEADER + "items:\n  - image: half.png\n")
    assert code == 2
    assert lines[0].startswith("m.yaml:4: item 'half' (#1): cannot read image")


def test_an_unreadable_image_is_reported(folder: Path) -> None:
    (folder / "truncated.png").write_bytes((folder / "astronaut.png").read_bytes()[:20])
    code, lines = validate(folder, HEADER + "items:\n  - image: truncated.png\n")
    assert code == 2
    assert lines[0].startswith("m.yaml:4: item 'truncated' (#1): cannot read image")


def test_cross_field_rules_are_reported_beside_other_problems(folder: Path) -> None:
    text = HEADER + "items:\n  - image: astronaut.png\n    steps: 0\n    canny: {low: 200, high: 100, hihg: 3}\n"
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[:-1] == [
        "m.yaml:5: item 'astronaut' (#1): steps must be an integer 1..1000, got 0",
        "m.yaml:6: item 'astronaut' (#1): unknown key 'canny.hihg' (did you mean 'canny.high'?)",
        "m.yaml:6: item 'astronaut' (#1): canny.low must be below canny.high, got 200 >= 100",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "m.yaml:1: a manifest must be a mapping with 'version' and 'items', got an empty file"),
        ("version: 1\nitems: {image: a.png}\n", "m.yaml:2: items must be a list, got a mapping"),
    ],
)
def test_shapes_are_named_in_plain_words(folder: Path, text: str, expected: str) -> None:
    code, lines = validate(folder, text)
    assert (code, lines[0]) == (2, expected)


def test_a_valid_manifest_passes(folder: Path) -> None:
    code, lines = validate(folder, HEADER + "items:\n  - image: astronaut.png\n  - {id: h, image: horse.png}\n")
    assert (code, lines) == (0, ["m.yaml: ok, 2 items, model tiny-sd15"])


def test_batch_stops_before_loading_a_model(folder: Path) -> None:
    path = folder / "m.yaml"
    path.write_text(HEADER + "items:\n  - image: astronaut.png\n    steps: 0\n")
    result = run_cli("batch", str(path), "--out", str(folder / "out"), exit_code=None)
    assert result.exit_code == 2
    assert "steps must be an integer 1..1000, got 0" in result.output
    assert not (folder / "out").exists()


def test_validate_and_help_import_neither_torch_nor_diffusers(folder: Path) -> None:
    (folder / "m.yaml").write_text(HEADER + "items:\n  - image: astronaut.png\n")
    code = (
        "import sys\n"
        "from rr_controlnet.cli import cli\n"
        "for args in (['--help'], ['batch', '--help'], ['fetch', '--help'], ['models', '--help'], ['validate', sys.argv[1]]):\n"
        "    try:\n"
        "        cli.main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'cv2', 'rerun', 'skimage', 'scipy') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(folder / "m.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.yaml", "ok, 4 items, model sdxl"),
        ("sweep.yaml", "ok, 6 items (6 sweep variants of 1 item), model sd15"),
    ],
)
def test_the_shipped_example_manifests_are_valid(name: str, expected: str) -> None:
    example = Path(__file__).resolve().parent.parent / "manifests" / name
    result = run_cli("validate", str(example), exit_code=None)
    assert result.exit_code == 0 and expected in result.output, result.output


def test_item_values_override_defaults_and_cli_overrides_both(folder: Path) -> None:
    from rr_controlnet.manifest.document import Overrides, load_manifest

    path = folder / "m.yaml"
    path.write_text(
        HEADER
        + "defaults: {steps: 10, seed: 3, canny: {low: 50}}\n"
        + "items:\n  - {image: astronaut.png, steps: 20, canny: {high: 150}}\n  - {image: horse.png}\n"
    )
    first, second = load_manifest(path).items
    assert (first.params.steps, first.params.seed, first.params.canny_low, first.params.canny_high) == (20, 3, 50, 150)
    assert (second.params.steps, second.params.canny_low, second.params.canny_high) == (10, 50, 200)
    assert second.params.guidance_scale == 7.5  # the SD1.5 family's default
    overridden = load_manifest(path, Overrides(steps=2, seed=9)).items
    assert {(item.params.steps, item.params.seed) for item in overridden} == {(2, 9)}


def test_corrupt_pixels_do_not_block_validation_of_headers(folder: Path) -> None:
    data = np.zeros((8, 8, 3), dtype=np.uint8)
    Image.fromarray(data).save(folder / "ok.png")
    code, _ = validate(folder, HEADER + "items:\n  - image: ok.png\n")
    assert code == 0


def test_an_unusable_output_folder_is_refused_before_the_model_libraries_load(folder: Path) -> None:
    (folder / "m.yaml").write_text(HEADER + "items:\n  - image: astronaut.png\n")
    (folder / "a-file").write_text("not a folder")
    code = (
        "import sys\n"
        "from rr_controlnet.cli import cli\n"
        "try:\n"
        "    cli.main(['batch', sys.argv[1], '--out', sys.argv[2]])\n"
        "except SystemExit as exc:\n"
        "    print('exit:', exc.code)\n"
        "print('heavy:', sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))\n"
    )
    arguments = [str(folder / "m.yaml"), str(folder / "a-file" / "out")]
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True)
    assert "exit: 2" in result.stdout and "heavy: []" in result.stdout, result.stdout + result.stderr
    assert "a-file is a file, not a folder" in result.stderr


def test_unknown_keys_are_matched_without_the_prefix_they_share() -> None:
    from rr_controlnet.manifest.checks import unknown_key_message

    swept = ("sweep.prompt", "sweep.seed", "sweep.canny.low", "sweep.canny.high", "sweep.zip")
    assert unknown_key_message("sweep.colour", swept) == f"unknown key 'sweep.colour'; known keys: {', '.join(swept)}"
    assert unknown_key_message("sweep.sed", swept) == "unknown key 'sweep.sed' (did you mean 'sweep.seed'?)"
    assert unknown_key_message("stpes", ("steps", "seed")) == "unknown key 'stpes' (did you mean 'steps'?)"


# --- a control model (flux-control): no ControlNet, so nothing of one ---------------------------------

CONTROL_HEADER = "version: 1\nmodel: tiny-flux-control\n"
NO_CONTROLNET = (
    "FLUX.1 control model (flux-control) has no ControlNet: the model reads the Canny map itself on every step"
)


def test_a_control_model_refuses_a_controlnets_scale_range_and_units_one_line_each(folder: Path) -> None:
    text = CONTROL_HEADER + (
        "defaults:\n  control_guidance_start: 0.1\n"
        "items:\n"
        "  - image: astronaut.png\n    controlnet_conditioning_scale: 0.8\n    control_guidance_end: 0.9\n"
        "  - image: horse.png\n    controls:\n      - {type: canny, scale: 0.7}\n"
    )
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[:-1] == [
        f"m.yaml:4: defaults: control_guidance_start: {NO_CONTROLNET}, so 0.1 would be ignored; remove it "
        "(2 items inherit it)",
        f"m.yaml:7: item 'astronaut' (#1): controlnet_conditioning_scale: {NO_CONTROLNET}, so 0.8 would be "
        "ignored; remove it",
        f"m.yaml:8: item 'astronaut' (#1): control_guidance_end: {NO_CONTROLNET}, so 0.9 would be ignored; remove it",
        f"m.yaml:10: item 'horse' (#2): controls: {NO_CONTROLNET}, so it runs no control units; remove `controls` "
        "(use `canny` for its map)",
    ]


def test_a_family_rule_is_located_where_the_value_is_written(folder: Path) -> None:
    """In defaults: the defaults' line, with how many items inherit it; in an item or its sweep: that key's line."""
    text = CONTROL_HEADER + (
        "defaults:\n  prompt: a horse\n  controlnet_conditioning_scale: 0.8\n  controls:\n    - {type: canny}\n"
        "items:\n"
        "  - image: astronaut.png\n    prompt: an astronaut\n    negative_prompt: blurry\n"
        "  - image: horse.png\n    controlnet_conditioning_scale: 0.5\n"
        "    sweep:\n      seed: [1, 2]\n      control_guidance_end: [0.5]\n"
    )
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[:-1] == [
        f"m.yaml:5: defaults: controlnet_conditioning_scale: {NO_CONTROLNET}, so 0.8 would be ignored; remove it "
        "(1 item inherits it)",
        f"m.yaml:6: defaults: controls: {NO_CONTROLNET}, so it runs no control units; remove `controls` "
        "(use `canny` for its map) (3 items inherit it)",
        "m.yaml:11: item 'astronaut' (#1): negative_prompt: FLUX.1 control model (flux-control) has no "
        "classifier-free guidance (its guidance is distilled), so a negative prompt would be ignored; remove it",
        f"m.yaml:16: item 'horse_seed1_end0.5' (#2): control_guidance_end: {NO_CONTROLNET}, so 0.5 would be ignored; "
        "remove it (and 1 more item)",
    ]


def test_a_swept_value_is_located_in_its_sweep_before_the_items_or_the_defaults_own(folder: Path) -> None:
    text = CONTROL_HEADER + (
        "defaults:\n  control_guidance_start: 0.1\n"
        "items:\n"
        "  - image: astronaut.png\n    control_guidance_start: 0.2\n"
        "    sweep:\n      zip: {seed: [1, 2], control_guidance_start: [0.3, 0.4]}\n"
    )
    code, lines = validate(folder, text)
    assert code == 2
    assert [line.split(": item")[0] for line in lines[:-1]] == ["m.yaml:9", "m.yaml:9"]  # the zip's line, twice


def test_a_control_model_takes_the_controlnet_defaults_and_ignores_them(folder: Path) -> None:
    """The built-in defaults (scale 0.5, start 0, end 1) are what every item has: written out, they pass."""
    text = CONTROL_HEADER + (
        "defaults:\n  controlnet_conditioning_scale: 0.5\n  control_guidance_start: 0.0\n  control_guidance_end: 1.0\n"
        "items:\n  - image: astronaut.png\n"
    )
    assert validate(folder, text) == (0, ["m.yaml: ok, 1 item, model tiny-flux-control"])


def test_a_sweep_of_a_controlnet_scale_is_refused_on_a_control_model(folder: Path) -> None:
    text = CONTROL_HEADER + "items:\n  - image: astronaut.png\n    sweep: {controlnet_conditioning_scale: [0.5, 1.0]}\n"
    code, lines = validate(folder, text)
    assert code == 2
    assert lines[:-1] == [
        f"m.yaml:5: item 'astronaut_ccs1' (#1): controlnet_conditioning_scale: {NO_CONTROLNET}, so 1.0 would be "
        "ignored; remove it"
    ]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "{base: someone/canny, controlnet: someone/controlnet, family: flux-control}",
            "m.yaml:2: model: model.controlnet: FLUX.1 control model (flux-control) has no ControlNet (the model "
            "reads the Canny map itself); remove it",
        ),
        (
            "{base: someone/flux, family: flux}",
            "m.yaml:2: model: model.controlnet is required: FLUX.1 (flux) runs a Canny ControlNet",
        ),
        (
            "{base: ./canny.safetensors, family: flux-control}",
            "m.yaml:2: model: model.config is required: a single-file flux-control base holds its transformer "
            "alone; name the model's diffusers folder or hub id (e.g. black-forest-labs/FLUX.1-Canny-dev) for the "
            "other components",
        ),
    ],
)
def test_a_custom_models_controlnet_fits_its_family(folder: Path, model: str, expected: str) -> None:
    (folder / "canny.safetensors").write_bytes(b"")
    code, lines = validate(folder, f"version: 1\nmodel: {model}\nitems:\n  - image: astronaut.png\n")
    assert (code, lines[:-1]) == (2, [expected])


def test_a_control_model_is_no_control_units_model(folder: Path) -> None:
    text = "version: 1\nmodel: tiny-flux\nitems:\n  - image: astronaut.png\n    controls:\n      - {type: canny, model: flux-canny-dev}\n"
    code, lines = validate(folder, text)
    assert (code, lines[:-1]) == (
        2,
        [
            "m.yaml:6: item 'astronaut' (#1): controls[0].model 'flux-canny-dev' is a control model (flux-control), not a ControlNet"
        ],
    )


def weights_folder(folder: Path, name: str, config: dict) -> str:
    """A local weights folder holding only its config: what validate reads to tell a family."""
    (folder / name).mkdir(parents=True)
    file_name = "model_index.json" if config["_class_name"].endswith("Pipeline") else "config.json"
    (folder / name / file_name).write_text(json.dumps(config))
    return f"./{name}"


SDXL_UNION_BASE = {"_class_name": "StableDiffusionXLControlNetUnionPipeline"}
FLUX_BASE = {"_class_name": "FluxControlNetPipeline"}
SDXL_BASE = {"_class_name": "StableDiffusionXLControlNetPipeline"}
FLUX_UNION_CONTROLNET = {"_class_name": "FluxControlNetModel", "num_mode": 7}
SDXL_UNION_CONTROLNET = {"_class_name": "ControlNetUnionModel"}


@pytest.mark.parametrize(
    ("base", "controlnet", "family", "expected"),
    [
        (SDXL_UNION_BASE, FLUX_UNION_CONTROLNET, None, "is a flux-union ControlNet, the base model is sdxl-union"),
        (FLUX_BASE, FLUX_UNION_CONTROLNET, "flux", "is a flux-union ControlNet, the base model is flux"),
        (SDXL_BASE, SDXL_UNION_CONTROLNET, "sdxl", "is a sdxl-union ControlNet, the base model is sdxl"),
    ],
)
def test_a_custom_models_controlnet_folder_must_be_of_its_family(
    folder: Path, base: dict, controlnet: dict, family: str | None, expected: str
) -> None:
    """Else the run stops on an internal error while loading, or every item fails, or a union model's weights
    load into a plain ControlNet."""
    model = {"base": weights_folder(folder, "base", base), "controlnet": weights_folder(folder, "cn", controlnet)}
    text = yaml.safe_dump({"version": 1, "model": {**model, **({"family": family} if family else {})}}, sort_keys=False)
    code, lines = validate(folder, text + "items:\n  - image: astronaut.png\n")
    assert (code, lines[:-1]) == (2, [f"m.yaml:4: model: model.controlnet './cn' {expected}"])


@pytest.mark.parametrize(
    ("base", "controlnet", "family", "expected"),
    [
        (SDXL_BASE, {"_class_name": "FluxControlNetModel"}, "flux", "a Stable Diffusion XL (sdxl) pipeline"),
        (FLUX_BASE, {"_class_name": "ControlNetModel"}, "sdxl", "a FLUX.1 (flux) pipeline"),
        (SDXL_BASE, SDXL_UNION_CONTROLNET, "sdxl-union", None),  # a variant runs its base family's folders
        (SDXL_UNION_BASE, {"_class_name": "ControlNetModel", "addition_embed_type": "text_time"}, "sdxl", None),
    ],
)
def test_a_written_family_must_fit_the_base_folders_pipeline(
    folder: Path, base: dict, controlnet: dict, family: str, expected: str | None
) -> None:
    """Else loading stops on diffusers' own error, after validate said ok."""
    model = {"base": weights_folder(folder, "base", base), "controlnet": weights_folder(folder, "cn", controlnet)}
    text = yaml.safe_dump({"version": 1, "model": {**model, "family": family}}, sort_keys=False)
    code, lines = validate(folder, text + "items:\n  - image: astronaut.png\n")
    if expected is None:
        assert code == 0, lines
        return
    line = (
        f"m.yaml:5: model: model.family {family} does not fit './base': its model_index.json names "
        f"{base['_class_name']}, {expected}"
    )
    assert (code, lines[:-1]) == (2, [line])


FLUX_TRANSFORMER = {"_class_name": "FluxTransformer2DModel", "in_channels": 64, "out_channels": None}
FLUX_CONTROL_TRANSFORMER = {"_class_name": "FluxTransformer2DModel", "in_channels": 128, "out_channels": 64}


@pytest.mark.parametrize(
    ("transformer", "model", "expected"),
    [
        (
            FLUX_CONTROL_TRANSFORMER,
            "{base: ./base, controlnet: ./cn, family: flux}",
            "m.yaml:2: model: model.base './base' is a control model (its transformer reads the control image "
            "itself: 128 input channels); name it with family flux-control and no controlnet",
        ),
        (
            FLUX_TRANSFORMER,
            "{base: ./base, family: flux-control}",
            "m.yaml:2: model: model.base './base' is no control model (its transformer takes 64 input channels, "
            "a control model twice its output's); flux-control needs FLUX.1 Canny [dev]'s",
        ),
    ],
)
def test_a_flux_base_must_be_a_control_model_exactly_when_its_family_is(
    folder: Path, transformer: dict, model: str, expected: str
) -> None:
    """Else every item fails on a tensor shape."""
    weights_folder(folder, "base", {"_class_name": "FluxControlNetPipeline"})
    weights_folder(folder / "base", "transformer", transformer)
    weights_folder(folder, "cn", {"_class_name": "FluxControlNetModel"})
    code, lines = validate(folder, f"version: 1\nmodel: {model}\nitems:\n  - image: astronaut.png\n")
    assert (code, lines[:-1]) == (2, [expected])


def test_validate_names_the_family_it_read_from_a_custom_models_folders(folder: Path) -> None:
    model = {
        "base": weights_folder(folder, "base", FLUX_BASE),
        "controlnet": weights_folder(folder, "cn", FLUX_UNION_CONTROLNET),
    }
    text = yaml.safe_dump({"version": 1, "model": model}, sort_keys=False) + "items:\n  - image: astronaut.png\n"
    assert validate(folder, text) == (0, ["m.yaml: ok, 1 item, model custom (family flux-union)"])


def test_a_custom_models_hub_controlnet_is_taken_at_its_word(folder: Path) -> None:
    """Only a local folder's config can be read without the hub: a hub id's family is the manifest's."""
    text = "version: 1\nmodel: {base: someone/flux, controlnet: someone/canny, family: flux}\nitems:\n  - image: astronaut.png\n"
    assert validate(folder, text) == (0, ["m.yaml: ok, 1 item, model custom (family flux)"])


def test_images_and_maps_under_the_home_folder_are_read_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    (home / "pictures").mkdir(parents=True)
    (home / "maps").mkdir()
    sample_image("horse.png", home / "pictures")
    sample_image("astronaut.png", home / "maps")
    (tmp_path / "project").mkdir()
    manifest = tmp_path / "project" / "m.yaml"
    units = [{"type": "canny"}, {"type": "depth", "image": "~/maps/astronaut.png"}]
    items = [{"image": "~/pictures/horse.png", "controls": units}]
    manifest.write_text(yaml.safe_dump({"version": 1, "model": "tiny-sd15", "items": items}))
    result = run_cli("validate", manifest)
    assert "ok" in result.output
