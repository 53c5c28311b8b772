"""The main job end to end: a manifest in, one complete .rrd and .png per item out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    blueprint_views,
    decoded_image,
    read_recording,
    run_batch,
    run_cli,
    tensor,
    tensor_dim_names,
    tiny_manifest,
)
from PIL import Image

STEPS = 3
# Each family's latent channels: what a 64x64 item's recorded latent holds per step, at the VAE's scale of 8
# (Flux's packed 2x2 tokens unpacked).
LATENT_CHANNELS = {
    "tiny-sd15": 4,
    "tiny-sdxl": 4,
    "tiny-sdxl-union": 4,
    "tiny-flux": 16,
    "tiny-flux-union": 16,
    "tiny-flux-control": 16,
    "tiny-sd3": 16,
}
ADHERENCE_SCORES = ("f1", "precision", "recall", "f1_tolerant", "precision_tolerant", "recall_tolerant", "ssim")


@pytest.fixture(scope="module", params=list(LATENT_CHANNELS))
def two_item_batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(request.param)
    manifest = tiny_manifest(folder, model=request.param)
    run_batch(manifest, folder / "out")
    return request.param, folder / "out"


def test_writes_one_recording_and_png_per_item_and_a_summary(two_item_batch: tuple[str, Path]) -> None:
    _, out = two_item_batch
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "astronaut.png",
        "astronaut.rrd",
        "batch.rbl",
        "horse.png",
        "horse.rrd",
        "index.html",
        "overview.png",
        "review",
        "summary.json",
        "summary.md",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert [(item["id"], item["status"], item["seed"]) for item in summary["items"]] == [
        ("astronaut", "done", 0),
        ("horse", "done", 5),
    ]
    for item in summary["items"]:
        assert item["files"] == [f"{item['id']}.rrd", f"{item['id']}.png"]
        assert item["params"]["steps"] == STEPS
        assert item["seconds"] > 0


def test_recording_holds_every_entity_with_steps_on_both_timelines(two_item_batch: tuple[str, Path]) -> None:
    model, out = two_item_batch
    recording = read_recording(out / "horse.rrd")
    assert recording.application_id == "rr_controlnet"
    root = "/items/horse"
    assert set(recording.rows) == {
        f"{root}/input/image",
        f"{root}/input/canny",
        f"{root}/prompt",
        f"{root}/params",
        f"{root}/latent",
        f"{root}/preview",
        f"{root}/output",
        f"{root}/adherence/overlay",
        f"{root}/adherence/scores",
        *(f"{root}/adherence/{score}" for score in ADHERENCE_SCORES),
    }
    for static in ("input/image", "input/canny", "prompt", "params"):
        recording.static(f"{root}/{static}")

    latents = recording.timed(f"{root}/latent")
    previews = recording.timed(f"{root}/preview")
    assert [row.step for row in latents] == list(range(STEPS))
    assert [row.step for row in previews] == list(range(STEPS))
    timesteps = [row.timestep for row in latents]
    assert all(isinstance(t, int) for t in timesteps) and timesteps == sorted(timesteps, reverse=True)
    for row in latents:
        assert tensor(row).shape == (LATENT_CHANNELS[model], 8, 8)  # 64x64 at the VAE's scale factor of 8
        assert tensor_dim_names(row) == ["channel", "height", "width"]
    for row in previews:
        assert row.columns["EncodedImage:media_type"] == ["image/jpeg"]
        assert decoded_image(row).shape == (8, 8, 3)

    params = recording.static(f"{root}/params").columns["TextDocument:text"][0]
    assert f"| model.name | {model} |" in params and "| steps | 3 |" in params and "diffusers" in params
    prompt = recording.static(f"{root}/prompt").columns["TextDocument:text"][0]
    assert "a futuristic research complex" in prompt


def test_output_is_the_requested_size_and_matches_the_png(two_item_batch: tuple[str, Path]) -> None:
    _, out = two_item_batch
    recording = read_recording(out / "astronaut.rrd")
    (output,) = recording.timed("/items/astronaut/output")
    logged = decoded_image(output)
    assert logged.shape == (64, 64, 3)
    np.testing.assert_array_equal(logged, np.asarray(Image.open(out / "astronaut.png")))
    entries = json.loads((out / "summary.json").read_text())["items"]
    assert [entry["size"] for entry in entries] == [list(Image.open(out / f"{e['id']}.png").size) for e in entries]


def test_item_files_share_one_recording_id(two_item_batch: tuple[str, Path]) -> None:
    _, out = two_item_batch
    ids = {read_recording(out / f"{name}.rrd").recording_id for name in ("astronaut", "horse")}
    assert len(ids) == 1


def test_every_recording_passes_rerun_verify(two_item_batch: tuple[str, Path]) -> None:
    _, out = two_item_batch
    rerun = Path(sys.executable).with_name("rerun")
    for path in sorted(out.glob("*.rrd")):
        result = subprocess.run([str(rerun), "rrd", "verify", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_batch_blueprint_names_each_items_views(two_item_batch: tuple[str, Path]) -> None:
    _, out = two_item_batch
    expected = {}
    for item_id in ("astronaut", "horse"):
        expected |= {
            f"{item_id}: input": ("2D", f"items/{item_id}/input/image"),
            f"{item_id}: canny": ("2D", f"items/{item_id}/input/canny"),
            f"{item_id}: latent": ("Tensor", f"items/{item_id}/latent"),
            f"{item_id}: preview": ("2D", f"items/{item_id}/preview"),
            f"{item_id}: output": ("2D", f"items/{item_id}/output"),
            f"{item_id}: edges followed": ("2D", f"items/{item_id}/adherence/overlay"),
            f"{item_id}: prompt": ("TextDocument", f"items/{item_id}/prompt"),
            f"{item_id}: params": ("TextDocument", f"items/{item_id}/params"),
            f"{item_id}: control adherence": ("TextDocument", f"items/{item_id}/adherence/scores"),
        }
    assert blueprint_views(out / "batch.rbl") == expected
    # Every item file carries the same views, so opening files together never loses a layout.
    for item_id in ("astronaut", "horse"):
        assert blueprint_views(out / f"{item_id}.rrd") == expected


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "rr_controlnet", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "batch" in result.stdout and "validate" in result.stdout


def test_large_batches_keep_the_full_blueprint_out_of_each_item_file() -> None:
    from rr_controlnet.recording.layout import FULL_BLUEPRINT_MAX_ITEMS, file_blueprint_items

    small = [f"item{index}" for index in range(FULL_BLUEPRINT_MAX_ITEMS)]
    assert file_blueprint_items(small) == small
    large = [*small, "one-more"]
    assert file_blueprint_items(large) == []  # batch.rbl carries the layout of large batches


def test_control_adherence_is_recorded_and_summarized(two_item_batch: tuple[str, Path]) -> None:
    _, out = two_item_batch
    (horse,) = [item for item in json.loads((out / "summary.json").read_text())["items"] if item["id"] == "horse"]
    adherence = horse["adherence"]
    assert 0 <= adherence["strict"]["f1"] <= adherence["tolerant"]["f1"] <= 1
    assert adherence["tolerance_px"] == pytest.approx(0.0075 * np.hypot(64, 64), abs=1e-6)
    recording = read_recording(out / "horse.rrd")
    (f1,) = recording.timed("/items/horse/adherence/f1")
    assert f1.step == STEPS - 1 and f1.columns["Scalars:scalars"] == [pytest.approx(adherence["strict"]["f1"])]
    overlay = recording.timed("/items/horse/adherence/overlay")[0]
    assert decoded_image(overlay).shape == (64, 64, 3)
    scores = recording.static("/items/horse/adherence/scores").columns["TextDocument:text"][0]
    assert f"| F1 | {adherence['strict']['f1']:.1%} |" in scores
    assert "### Control adherence" in (out / "summary.md").read_text()


def test_recording_streams_are_reused_then_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    from rr_controlnet.recording import write as record

    monkeypatch.setattr(record, "STREAM_ITEMS", 2)
    pool = record.StreamPool("a-recording")
    first = pool.acquire()
    pool.release(first)
    assert pool.acquire() is first  # one item recorded: back in the pool
    pool.release(first)
    assert pool.acquire() is not first  # two: closed, its per-entity state freed
    pool.close()


def test_the_batch_process_caps_malloc_arenas_before_it_loads_a_model(tmp_path: Path, monkeypatch) -> None:
    import sys

    from rr_controlnet.run import memory

    if sys.platform.startswith("linux"):
        assert memory.limit_malloc_arenas()  # glibc takes the setting
    calls: list[str] = []
    monkeypatch.setattr(memory, "limit_malloc_arenas", lambda: calls.append("capped") or True)
    result = run_cli("batch", str(tiny_manifest(tmp_path)), "--out", str(tmp_path / "out"), exit_code=None)
    assert result.exit_code == 0, result.output
    assert calls == ["capped"]
