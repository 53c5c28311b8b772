"""The review page's data and files without a browser: what data.js holds per item, sweep grids, thumbnails,
filmstrips, `rr-controlnet review` on good and bad folders, and what a run records for the page's header."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image
from review_browser import write_manifest

from rr_controlnet.outputs import BatchSummary, ItemOutcome
from rr_controlnet.review.pages import StepFrames, page_data, write_review_page
from rr_controlnet.review.pages.encode import EDGE_SIDE, edge_png, palette_png
from rr_controlnet.review.pages.items import read_item_info
from rr_controlnet.review.pages.page import sweep_tables

ADHERENCE = {
    "strict": {"precision": 0.25, "recall": 0.5, "f1": 0.333333},
    "tolerant": {"precision": 0.5, "recall": 0.75, "f1": 0.6},
    "tolerance_px": 3.8,
    "ssim": 0.4,
    "control_edges": 1000,
    "output_edges": 1500,
}
PARAMS = {
    "prompt": "aerial view, a futuristic research complex in a bright foggy jungle, hard lighting",
    "negative_prompt": "low quality, bad quality, sketches",
    "seed": 0,
    "steps": 30,
    "guidance_scale": 7.5,
    "controlnet_conditioning_scale": 0.5,
    "control_guidance_start": 0.0,
    "control_guidance_end": 1.0,
    "canny_low": 100,
    "canny_high": 200,
    "width": None,
    "height": None,
    "resize": "crop",
}


def entry(item_id: str, status: str = "done", **changes) -> dict:
    """A summary.json item as a batch writes it."""
    files = [f"{item_id}.rrd", f"{item_id}.png"] if status == "done" else []
    checksum = {"bytes": 123456, "sha256": "ab" * 32, "mtime_ns": 1}
    document = {
        "id": item_id,
        "status": status,
        "seed": changes.get("seed", 0),
        "params": dict(PARAMS, seed=changes.pop("seed", 0), **changes.pop("params", {})),
        "params_hash": "0123456789abcdef",
        "image": f"/data/images/{item_id}.png",
        "seconds": 1.25 if status != "pending" else None,
        "files": files,
        "error": "OutOfMemoryError: CUDA out of memory" if status == "failed" else None,
        "checksums": {name: checksum for name in files},
        "warnings": [],
        "adherence": ADHERENCE if status == "done" else None,
        "sweep": None,
        "size": [512, 512] if status == "done" else None,
    }
    return document | changes


def summary(entries: list[dict]) -> BatchSummary:
    document = {"manifest": "/data/batch.yaml", "model": {"name": "sd15"}, "versions": {"rerun-sdk": "0.41.0"}}
    return BatchSummary.from_document({**document, "items": entries})


def sweep_entry(source: str, seed: int, scale: float, coordinates: list[int]) -> dict:
    values = {"seed": seed, "controlnet_conditioning_scale": scale}
    sweep = {"source": source, "values": values, "axes": [["seed"], ["controlnet_conditioning_scale"]]}
    sweep |= {"coordinates": coordinates, "shape": [2, 3]}
    return entry(
        f"{source}_seed{seed}_ccs{scale:g}", seed=seed, sweep=sweep, params={"controlnet_conditioning_scale": scale}
    )


# --- data.js ---------------------------------------------------------------------------------------------


def test_items_come_failed_first_then_pending_then_done_each_in_manifest_order() -> None:
    entries = [entry("a"), entry("b", "pending"), entry("c", "failed"), entry("d"), entry("e", "failed")]
    items = page_data(summary(entries), {})["items"]
    assert [(item["id"], item["n"]) for item in items] == [("c", 2), ("e", 4), ("b", 1), ("a", 0), ("d", 3)]
    assert items[0]["error"] == "OutOfMemoryError: CUDA out of memory"
    assert "scores" not in items[0] and items[-1]["scores"] == [0.333333, 0.6, 0.25, 0.5, 0.4]


def test_parameters_shared_by_every_item_are_written_once_and_an_item_stays_small() -> None:
    entries = [entry(f"item{index:05d}", seed=index) for index in range(1000)]
    entries[10]["params"]["prompt"] = "a lighthouse at dusk"
    data = page_data(summary(entries), {f"item{index:05d}": INFO for index in range(1000)})
    assert data["common"] == PARAMS  # each parameter's most frequent value
    assert "params" not in data["items"][0]
    assert data["items"][10]["params"] == {"seed": 10, "prompt": "a lighthouse at dusk"}
    assert data["items"][11]["params"] == {"seed": 11}
    per_item = len(json.dumps(data["items"], separators=(",", ":")).encode()) / len(entries)
    assert per_item < 700  # the issue allows 30 kB; a full summary.json entry is about 1.4 kB
    assert len(json.dumps(entries[0]).encode()) > 2 * per_item


def test_a_units_map_is_named_relative_to_the_output_folder_as_in_summary_json() -> None:
    """No file in the folder shows the machine's layout: a unit's map path is the folder's, like the input's."""
    units = {"0-canny": {"type": "canny", "mode": 3}, "1-depth": {"type": "depth", "image": "/data/maps/a.png"}}
    data = page_data(summary([entry("a", params={"controls": units})]), {}, folder=Path("/data/out"))
    assert data["items"][0]["params"]["controls"]["1-depth"]["image"] == "../maps/a.png"
    assert "/data/" not in json.dumps(data)


INFO = {"id": "x", "made_from": "ab" * 32, "assets": {"input": [256, 256], "output": [160, 160], "steps": [64, 64]}}
INFO |= {"steps": [0, 3, 6, 9, 12, 16, 19, 22, 25, 29], "infotext": "a prompt\nSteps: 30, Seed: 0"}


def test_an_items_review_files_are_listed_and_its_infotext_left_to_its_own_script() -> None:
    data = page_data(summary([entry("a"), entry("b", "failed")]), {"a": INFO, "b": INFO})
    done, failed = data["items"][1], data["items"][0]
    assert done["assets"] == INFO["assets"] and done["steps"] == INFO["steps"]
    assert failed["assets"] == {"input": [256, 256]}  # an earlier run's output is not this failure's
    assert "infotext" not in json.dumps(data)
    assert done["files"] == [["a.rrd", 123456], ["a.png", 123456]]


def test_a_sweep_is_a_grid_of_its_axes_with_every_values_label() -> None:
    variants = [sweep_entry("horse", seed, scale, [row, column])
                for row, seed in enumerate((0, 1)) for column, scale in enumerate((0.5, 1.0, 1.5))]  # fmt: skip
    tables, index = sweep_tables([ItemOutcome.from_document(item) for item in [entry("plain"), *variants]])
    assert index == {"horse": 0}
    (table,) = tables
    assert table["axes"] == [["seed"], ["controlnet_conditioning_scale"]] and table["names"] == ["seed", "ccs"]
    assert table["shape"] == [2, 3]
    assert table["labels"] == [["seed 0", "seed 1"], ["ccs 0.5", "ccs 1", "ccs 1.5"]]
    items = page_data(summary(variants), {})["items"]
    assert [item["sweep"] for item in items] == [[0, [row, column]] for row in range(2) for column in range(3)]


# --- review files ------------------------------------------------------------------------------------------


def test_step_frames_keep_at_most_twelve_evenly_spaced_steps() -> None:
    frames = StepFrames(50)
    assert len(frames.wanted) == 12 and min(frames.wanted) == 0 and max(frames.wanted) == 49
    preview = np.zeros((8, 8, 3), np.uint8)
    for step in range(50):
        frames.add(step, preview)
    assert [step for step, _ in frames.sampled()] == sorted(frames.wanted)
    few = StepFrames(3)
    few.add(0, preview)
    few.add(1, None)  # previews off: nothing to keep
    few.add(2, preview)
    assert [step for step, _ in few.sampled()] == [0, 2]


def test_edge_maps_keep_one_pixel_edges_when_shrunk() -> None:
    edges = np.zeros((1024, 2048), np.uint8)
    edges[100:900, 1001] = 255  # a one-pixel line
    data, size = edge_png(edges)
    assert size == (EDGE_SIDE, EDGE_SIDE // 2)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "1"
        shrunk = np.asarray(image.convert("L"))
    assert (shrunk[30:220, 250] == 255).all() and shrunk.sum() // 255 == shrunk[:, 250].sum() // 255


def test_an_overlay_keeps_its_exact_colours_in_a_small_palette() -> None:
    overlay = np.zeros((64, 64, 3), np.uint8)
    overlay[10, :] = (255, 255, 255)
    overlay[20, :] = (255, 64, 64)
    overlay[30, :] = (64, 200, 255)
    data, _ = palette_png(overlay)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), overlay)
    assert len(data) < 400


# --- a real batch's page and `rr-controlnet review` -------------------------------------------------------


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("review-data")
    manifest = write_manifest(folder, [{"image": "horse.png"}, {"image": "chelsea.png", "seed": 3}], steps=3)
    result = run_cli("batch", str(manifest), "--out", str(folder / "out"), exit_code=None)
    assert result.exit_code == 0, result.output
    return folder / "out"


def review_files(out: Path, item_id: str) -> dict[str, bytes]:
    folder = out / "review" / "items" / item_id
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_batch_writes_its_page_and_records_where_and_how_long_it_ran(batch: Path) -> None:
    document = json.loads((batch / "summary.json").read_text())
    run = document["run"]
    assert run["device"] == "cpu" and run["dtype"] == "fp32" and run["wall_seconds"] > 0
    assert run["started"].endswith("+00:00")
    assert (batch / "index.html").read_text().count("<script src=") == 7  # data, links, the page's own, open_viewer
    data = (batch / "review" / "data.js").read_text()
    assert data.startswith("window.RR_REVIEW = {") and '"wall_seconds"' in data
    assert sorted(review_files(batch, "horse")) == [
        "canny.png",
        "info.js",
        "input.jpg",
        "output.jpg",
        "overlay.png",
        "steps.jpg",
    ]
    info = read_item_info(batch, "horse")
    assert info["steps"] == [0, 1, 2] and info["infotext"].startswith("a futuristic research complex\n")
    assert info["made_from"] == document["items"][0]["checksums"]["horse.png"]["sha256"]


def page_files(out: Path) -> dict:
    data = (out / "review" / "data.js").read_text().removeprefix("window.RR_REVIEW = ").rstrip(";\n")
    return json.loads(data)["files"]


def test_a_batch_page_links_its_contact_sheet_from_its_first_write(batch: Path) -> None:
    assert (batch / "overview.png").is_file()
    assert page_files(batch)["overview"] == ["overview.png"]


def test_two_reviews_of_one_folder_at_once_both_finish_quietly(batch: Path, tmp_path: Path) -> None:
    """150 failed items whose input thumbnails both processes make (the review files are gone)."""
    import shutil

    document = json.loads((batch / "summary.json").read_text())
    horse = next(entry for entry in document["items"] if entry["id"] == "horse")
    image = str((batch / horse["image"]).resolve())
    failed = dict(horse, status="failed", error="RuntimeError: out of memory", files=[], checksums={}, image=image)
    items = [dict(failed, id=f"item{index:03d}") for index in range(150)]
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(batch / "overview.png", out / "overview.png")
    (out / "summary.json").write_text(json.dumps(dict(document, items=items, item_ids=[item["id"] for item in items])))
    command = [sys.executable, "-m", "rr_controlnet", "review", str(out)]
    for _ in range(2):  # each time both make every item's files
        shutil.rmtree(out / "review", ignore_errors=True)
        reviews = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"]
        outputs = [review.communicate(timeout=300)[0] for review in reviews]
        assert [review.returncode for review in reviews] == [0, 0], outputs
        assert not [line for output in outputs for line in output.splitlines() if "warning" in line], outputs
        assert all(list(read_item_info(out, item["id"])["assets"]) == ["input"] for item in items)
        assert sorted(path.name for path in (out / "review").glob(".*")) == []  # no lock or partial left


def test_review_of_a_folder_whose_first_batch_still_runs_says_it_is_in_use(tmp_path: Path) -> None:
    from rr_controlnet.outputs.lock import FolderLock

    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out):  # as a batch holds it before its first summary
        result = run_cli("review", str(out), exit_code=None)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {out}: in use: a batch is still writing it (the whole batch: pid ")
    assert result.output.rstrip().endswith("it writes the page when it is done")
    assert not (out / "index.html").exists()


def test_review_makes_missing_images_from_the_item_files_without_a_model(
    batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from rr_controlnet.models import loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: pytest.fail("review loaded a model"))
    out = tmp_path / "out"
    shutil.copytree(batch, out)
    written = review_files(out, "chelsea")
    shutil.rmtree(out / "review")
    (out / "index.html").unlink()
    result = run_cli("review", str(out), exit_code=None)
    assert result.exit_code == 0, result.output
    assert f"review page: {out / 'index.html'}" in result.output
    remade = review_files(out, "chelsea")
    assert sorted(remade) == sorted(written)
    for name in ("input.jpg", "canny.png", "output.jpg", "overlay.png"):  # the same pixels, read back
        assert remade[name] == written[name], name
    before, after = read_item_info(batch, "chelsea"), read_item_info(out, "chelsea")
    assert after == before  # steps, sizes, infotext and the output it was made from
    # The filmstrip comes from the recorded (JPEG) previews: the same frames, each of nearly the same colour.
    strips = [np.asarray(Image.open(io.BytesIO(files["steps.jpg"]))).astype(float) for files in (written, remade)]
    assert strips[0].shape == strips[1].shape
    frames = [strip.reshape(8, 3, 8, 3).mean(axis=(0, 2)) for strip in strips]  # (frame, channel) means
    assert np.abs(frames[0] - frames[1]).max() < 6


def test_review_replaces_images_that_no_longer_match_the_output(batch: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(batch, out)
    folder = out / "review" / "items" / "horse"
    (folder / "output.jpg").write_bytes(b"an older output")
    (folder / "info.js").write_text(
        (folder / "info.js").read_text().replace(read_item_info(out, "horse")["made_from"], "0" * 64)
    )
    assert run_cli("review", str(out), exit_code=None).exit_code == 0
    assert (folder / "output.jpg").read_bytes() == (batch / "review" / "items" / "horse" / "output.jpg").read_bytes()


def test_writing_a_page_needs_neither_torch_nor_rerun(batch: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from rr_controlnet.review.pages import write_review_page; "
        "from rr_controlnet.outputs import OutputFolder; "
        f"out = Path({str(batch)!r}); write_review_page(out, OutputFolder(out).read()); "
        "print(sorted(name for name in ('torch', 'rerun', 'diffusers') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["empty folder", "missing", "a file", "shards only", "not a summary"])
def test_review_of_a_folder_that_is_not_an_output_folder_says_so_in_one_line(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out"
    if kind != "missing":
        target.mkdir()
    if kind == "a file":
        target = tmp_path / "notes.txt"
        target.write_text("hello")
    if kind == "shards only":
        (target / "summary.shard-0-of-2.json").write_text('{"items": []}')
    if kind == "not a summary":
        (target / "summary.json").write_text("[1, 2, 3]")
    result = run_cli("review", str(target), exit_code=None)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    if kind == "shards only":
        assert "rr-controlnet summarize" in lines[0]
    assert not (tmp_path / "out" / "index.html").exists()


def test_write_review_page_builds_from_the_summary_alone(tmp_path: Path) -> None:
    """A summary whose items have no files: every item listed, no image promised."""
    page = write_review_page(tmp_path, summary([entry("a", "pending"), entry("b", "failed")]))
    data = json.loads((tmp_path / "review" / "data.js").read_text().removeprefix("window.RR_REVIEW = ").rstrip(";\n"))
    assert page == tmp_path / "index.html" and [item["id"] for item in data["items"]] == ["b", "a"]
    assert all("assets" not in item for item in data["items"])
