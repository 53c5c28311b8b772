"""Prompts longer than the text encoder reads are reported, and the metadata says what it read."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import read_recording, run_cli, tiny_manifest
from PIL import Image

LONG_PROMPT = "aerial view, a futuristic research complex in a bright foggy jungle, hard lighting, " * 3


def test_a_prompt_cut_by_the_text_encoder_is_reported_and_recorded_as_read(tmp_path: Path) -> None:
    manifest = tiny_manifest(
        tmp_path, items=[{"image": "horse.png", "prompt": LONG_PROMPT}, {"image": "astronaut.png"}]
    )
    result = run_cli("batch", str(manifest), "--out", str(tmp_path / "out"), exit_code=None)
    assert result.exit_code == 0, result.output
    assert "item 'horse': warning: prompt is" in result.output

    items = {item["id"]: item for item in json.loads((tmp_path / "out" / "summary.json").read_text())["items"]}
    (warning,) = items["horse"]["warnings"]
    assert warning.startswith("prompt is ") and "tokens, the text encoder reads 77: the rest was cut off" in warning
    assert items["astronaut"]["warnings"] == []
    assert "### Warnings" in (tmp_path / "out" / "summary.md").read_text()

    image = Image.open(tmp_path / "out" / "horse.png")
    read = json.loads(image.text["rr-controlnet"])["text_encoder_read"]["prompt"]
    assert read and len(read) < len(LONG_PROMPT) and read.startswith("aerial view")
    assert image.text["parameters"].split("\n")[0] == read  # what the model saw, not what was asked
    assert json.loads(image.text["rr-controlnet"])["params"]["prompt"] == LONG_PROMPT

    recording = read_recording(tmp_path / "out" / "horse.rrd")
    prompt = recording.static("/items/horse/prompt").columns["TextDocument:text"][0]
    assert "as the text encoder read it" in prompt and read in prompt
    params = recording.static("/items/horse/params").columns["TextDocument:text"][0]
    assert "| warning | prompt is " in params
