"""What gets recorded per step: preview modes, latent thinning, float16 latents, GPU-only options."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import decoded_image, read_recording, run_batch, run_cli, tiny_manifest


def run(tmp_path: Path, *args: str) -> Path:
    manifest = tiny_manifest(tmp_path, items=[{"image": "horse.png"}])
    run_batch(manifest, tmp_path / "out", *args)
    return tmp_path / "out" / "horse.rrd"


@pytest.mark.parametrize(("mode", "shape"), [("x0", (8, 8, 3)), ("taesd", (64, 64, 3)), ("vae", (64, 64, 3))])
def test_every_preview_mode_records_one_image_per_step(tmp_path: Path, mode: str, shape: tuple) -> None:
    recording = read_recording(run(tmp_path, "--preview", mode))
    previews = recording.timed("/items/horse/preview")
    assert [row.step for row in previews] == [0, 1, 2]
    assert all(decoded_image(row).shape == shape for row in previews)


def test_preview_none_records_latents_only(tmp_path: Path) -> None:
    recording = read_recording(run(tmp_path, "--preview", "none"))
    assert "/items/horse/preview" not in recording.rows
    assert len(recording.timed("/items/horse/latent")) == 3


def test_latent_every_thins_the_latents_but_not_the_previews(tmp_path: Path) -> None:
    recording = read_recording(run(tmp_path, "--latent-every", "2"))
    assert [row.step for row in recording.timed("/items/horse/latent")] == [0, 2]
    assert [row.step for row in recording.timed("/items/horse/preview")] == [0, 1, 2]


def test_latents_are_recorded_as_float16(tmp_path: Path) -> None:
    from rerun.chunk import RrdReader

    path = run(tmp_path)
    (chunk, *_) = RrdReader(str(path)).stream().filter(content="/items/horse/latent").to_chunks()
    (tensor,) = chunk.to_record_batch().column("Tensor:data")[0].as_py()
    assert tensor["shape"] == [4, 8, 8]
    column = chunk.to_record_batch().column("Tensor:data").flatten().field("buffer")
    assert column.type_codes[0].as_py() == 9  # the F16 member of Rerun's tensor buffer union


@pytest.mark.parametrize("flag", ["--offload", "--compile"])
def test_gpu_only_options_are_refused_on_the_cpu(tmp_path: Path, flag: str) -> None:
    manifest = tiny_manifest(tmp_path)
    result = run_cli("batch", str(manifest), "--device", "cpu", flag, exit_code=None)
    assert result.exit_code == 2
    assert f"error: {flag} needs a CUDA device; this run is on cpu" in result.output


def test_no_adherence_records_no_scores(tmp_path: Path) -> None:
    import json

    recording = read_recording(run(tmp_path, "--no-adherence"))
    assert not [entity for entity in recording.rows if "/adherence" in entity]
    (item,) = json.loads((tmp_path / "out" / "summary.json").read_text())["items"]
    assert item["adherence"] is None
