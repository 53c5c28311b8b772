"""Review artifacts: the contact sheet, overview.png and the markdown job summary, built without a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGES
from PIL import Image

from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder
from rr_controlnet.review.contact_sheet import SheetRow, contact_sheet, sheet_rows, write_overview
from rr_controlnet.review.job_summary import summary_markdown
from rr_controlnet.review.markdown import append_summary

EDGES = np.zeros((64, 64), dtype=np.uint8)
EDGES[16:48, 32] = 255


def done_row(item_id: str = "astronaut", image: str = "astronaut.png") -> SheetRow:
    return SheetRow(item_id, "done", 0, "a research complex", IMAGES / image, EDGES, IMAGES / image, None)


def failed_row() -> SheetRow:
    return SheetRow("cat", "failed", 7, "a cat", IMAGES / "chelsea.png", None, None, "OutOfMemoryError: CUDA")


def reddish_pixels(sheet: Image.Image) -> np.ndarray:
    """The output column (right third, below the labels) where the failed colour shows."""
    pixels = np.asarray(sheet).astype(int)[80:, sheet.width * 2 // 3 :]
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (red > 150) & (green < 120) & (blue < 120)


def test_contact_sheet_grows_by_one_row_per_item() -> None:
    one = contact_sheet([done_row()])
    three = contact_sheet([done_row(), failed_row(), done_row("horse", "horse.png")])
    assert one.mode == three.mode == "RGB"
    assert three.height > one.height
    assert three.height - one.height == 2 * (one.height - contact_sheet([]).height)


def test_a_failed_item_shows_its_reason_where_the_output_would_be() -> None:
    assert reddish_pixels(contact_sheet([failed_row()])).sum() > 20
    assert reddish_pixels(contact_sheet([done_row("horse", "horse.png")])).sum() == 0


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "I;16"])
def test_inputs_of_any_mode_render(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"input-{mode.replace(';', '')}.png"
    Image.open(IMAGES / "horse.png").convert(mode if mode != "I;16" else "L").convert(mode).save(path)
    sheet = contact_sheet([SheetRow("horse", "done", 0, "a horse", path, EDGES, path)])
    assert sheet.width > 3 * 192


def test_missing_and_unreadable_files_render_as_labelled_tiles(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    rows = [
        SheetRow("gone", "done", 0, "", tmp_path / "gone.png", None, tmp_path / "gone-out.png"),
        SheetRow("text", "done", 0, "x" * 500, tmp_path / "notes.png", None, None),
        SheetRow("later", "pending", 3, "waits", None, None, None),
    ]
    assert contact_sheet(rows).height > contact_sheet(rows[:1]).height


def test_write_overview_writes_a_png_atomically(tmp_path: Path) -> None:
    path = write_overview(tmp_path / "out", [done_row(), failed_row()])
    assert path == tmp_path / "out" / "overview.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        assert image.size == contact_sheet([done_row(), failed_row()]).size
    assert [p.name for p in path.parent.iterdir()] == ["overview.png"]


def typed(document: dict) -> BatchSummary:
    return BatchSummary.from_document(document)


def summary_document(out_dir: Path) -> dict:
    params = {"prompt": "a research complex", "seed": 0}
    files = ["astronaut.rrd", "astronaut.png"]
    items = [
        ItemOutcome("astronaut", "done", 0, params, "abc", str(IMAGES / "astronaut.png"), 1.234, files),
        ItemOutcome("cat", "failed", 7, {**params, "seed": 7}, "def", seconds=0.5, error="ItemFailed: bad | pipe <b>"),
        ItemOutcome("horse", "pending", 5, {**params, "seed": 5}, "ghi"),
    ]
    model = {"name": "tiny-sd15", "family": "sd15"}
    return json.loads(BatchSummary(str(out_dir / "manifest.yaml"), model, "rid", items).to_json())


def test_summary_markdown_is_a_table_with_counts_and_reasons(tmp_path: Path) -> None:
    markdown = summary_markdown(typed(summary_document(tmp_path)))
    lines = markdown.splitlines()
    assert lines[0].startswith("## rr-controlnet: ")
    assert "1 done, 1 failed, 1 pending" in markdown
    assert "| item | status | seed | seconds | files |" in lines
    assert "| astronaut | done | 0 | 1.2 | astronaut.rrd, astronaut.png |" in lines
    assert "| cat | **failed**: ItemFailed: bad \\| pipe &lt;b&gt; | 7 | 0.5 |  |" in lines
    assert "| horse | pending | 5 |  |  |" in lines


def test_append_summary_creates_then_appends(tmp_path: Path) -> None:
    path = tmp_path / "step-summary.md"
    append_summary("## first", path)
    append_summary("## second\n", path)
    assert path.read_text() == "## first\n## second\n"


def test_rows_take_recorded_inputs_and_edge_maps_from_the_caller(tmp_path: Path) -> None:
    summary = typed(summary_document(tmp_path))
    rows = sheet_rows(OutputFolder(tmp_path), summary.items, canny_for=lambda item_id: EDGES)
    assert [(row.item_id, row.status, row.seed) for row in rows] == [
        ("astronaut", "done", 0),
        ("cat", "failed", 7),
        ("horse", "pending", 5),
    ]
    assert rows[0].input_path == IMAGES / "astronaut.png" and rows[1].input_path is None
    assert rows[0].output_path == tmp_path / "astronaut.png" and rows[1].output_path is None
    assert rows[1].error == "ItemFailed: bad | pipe <b>"
    assert rows[0].canny is EDGES
    assert contact_sheet(rows).height > contact_sheet(rows[:1]).height


def many_entries(count: int, out_dir: Path) -> dict:
    items = [ItemOutcome(f"item{n:05d}", "done", n, {"prompt": "p"}, f"h{n}") for n in range(count)]
    return json.loads(BatchSummary(str(out_dir / "manifest.yaml"), {"name": "tiny-sd15"}, "rid", items).to_json())


def test_large_batches_get_a_paged_contact_sheet_redrawn_only_where_it_changed(tmp_path: Path) -> None:
    from rr_controlnet.review.contact_sheet import ROWS_PER_PAGE, write_overview_pages

    document = many_entries(2 * ROWS_PER_PAGE + 1, tmp_path)
    pages = write_overview_pages(OutputFolder(tmp_path), typed(document))
    assert [page.name for page in pages] == ["overview-001.png", "overview-002.png", "overview-003.png"]
    assert Image.open(pages[0]).height > Image.open(pages[2]).height  # 50 rows, then 1
    drawn = {page.name: page.stat().st_mtime_ns for page in pages}

    document["items"][ROWS_PER_PAGE]["status"] = "failed"  # the first item of page 2
    write_overview_pages(OutputFolder(tmp_path), typed(document))
    redrawn = {page.name for page in pages if page.stat().st_mtime_ns != drawn[page.name]}
    assert redrawn == {"overview-002.png"}

    write_overview_pages(OutputFolder(tmp_path), typed(many_entries(3, tmp_path)))  # one page again, no stale ones
    assert sorted(path.name for path in tmp_path.iterdir()) == ["overview.png"]


def test_summary_markdown_of_a_large_batch_stays_small_and_lists_failures_first(tmp_path: Path) -> None:
    from rr_controlnet.review.markdown import TABLE_ROW_LIMIT

    document = many_entries(TABLE_ROW_LIMIT + 100, tmp_path)
    document["items"][-1].update(status="failed", error="OutOfMemoryError")
    markdown = summary_markdown(typed(document))
    rows = [line for line in markdown.splitlines() if line.startswith("| item0")]
    assert len(rows) == TABLE_ROW_LIMIT
    assert rows[0].startswith(f"| item{TABLE_ROW_LIMIT + 99:05d} | **failed**: OutOfMemoryError")
    assert markdown.rstrip().endswith("... and 100 more done items: summary.json lists every item.")
    assert len(markdown.encode()) < 1024 * 1024  # GitHub's limit for a job summary


def test_summary_markdown_names_the_statuses_it_left_out(tmp_path: Path) -> None:
    from rr_controlnet.review.markdown import TABLE_ROW_LIMIT

    document = many_entries(TABLE_ROW_LIMIT + 200, tmp_path)
    for entry in document["items"][: TABLE_ROW_LIMIT + 100]:
        entry.update(status="failed", error="OutOfMemoryError")
    markdown = summary_markdown(typed(document))
    assert "... and 200 more items (100 done, 100 failed): summary.json lists every item." in markdown


def test_many_sweeps_of_long_prompts_stay_within_a_job_summary(tmp_path: Path) -> None:
    from rr_controlnet.review.markdown import MAX_BYTES, TABLE_ROW_LIMIT

    document = many_entries(100 * 100, tmp_path)
    for number, entry in enumerate(document["items"]):
        prompt = f"variant {number % 100} of a prompt long enough to matter, " * 4
        place = {"axes": [["prompt"]], "coordinates": [number % 100], "shape": [100]}
        entry["sweep"] = {"source": f"source{number // 100}", "values": {"prompt": prompt}, **place}
        entry["adherence"] = {
            "strict": {"precision": 0.5, "recall": 0.5, "f1": 0.5},
            "tolerant": {"precision": 0.6, "recall": 0.6, "f1": 0.6},
            "tolerance_px": 1.0,
            "ssim": 0.1,
            "control_edges": 10,
            "output_edges": 10,
        }
    markdown = summary_markdown(typed(document))
    assert len(markdown.encode()) <= MAX_BYTES
    sweep_rows = [line for line in markdown.splitlines() if line.startswith("| item0") and "| done | 50.0% |" in line]
    assert len(sweep_rows) == TABLE_ROW_LIMIT  # five sources of 100, in all
    assert "... and 95 more sweeps (9,500 variants): summary.json lists every variant with its values." in markdown
    assert "... and 9,500 more scored items: summary.json has every score." in markdown


def test_markdown_is_cut_at_a_line_with_a_note_past_its_byte_limit() -> None:
    from rr_controlnet.review.markdown import MAX_BYTES, bounded

    lines = ["| " + "x" * 998 + " |"] * 1000
    text = bounded(lines, "summary.json")
    assert len(text.encode()) <= MAX_BYTES
    assert text.endswith("\n... cut at 512 kB: summary.json lists everything.\n")
    assert all(line == lines[0] for line in text.splitlines()[:-2])
    assert bounded(lines[:3], "summary.json") == "\n".join(lines[:3]) + "\n"


def test_batch_blueprint_file_is_bounded(tmp_path: Path) -> None:
    from helpers import blueprint_views

    from rr_controlnet.recording.layout import BATCH_BLUEPRINT_MAX_ITEMS
    from rr_controlnet.recording.write import save_batch_blueprint

    items = [ItemOutcome.pending(f"item{n}") for n in range(BATCH_BLUEPRINT_MAX_ITEMS + 5)]
    views = blueprint_views(save_batch_blueprint(items, tmp_path / "batch.rbl"))
    assert len(views) == 9 * BATCH_BLUEPRINT_MAX_ITEMS
    assert (
        f"item{BATCH_BLUEPRINT_MAX_ITEMS - 1}: output" in views
        and f"item{BATCH_BLUEPRINT_MAX_ITEMS}: output" not in views
    )


def test_summary_json_is_rewritten_at_most_once_an_interval() -> None:
    import time

    from rr_controlnet.outputs.journal import SummaryWriter

    writes: list[float] = []
    writer = SummaryWriter(lambda: writes.append(time.monotonic()), interval=0.3)
    for _ in range(200):  # a burst of finished items
        writer.changed()
    assert len(writes) == 1  # the first at once; the rest wait for the interval
    time.sleep(0.6)
    assert len(writes) == 2  # the timer wrote what changed since
    writer.close()


def test_a_timer_that_fires_during_close_writes_nothing_after_it() -> None:
    import threading
    import time

    from rr_controlnet.outputs.journal import SummaryWriter

    writes: list[float] = []
    lock = threading.RLock()
    writer = SummaryWriter(lambda: writes.append(time.monotonic()), lock, interval=0.05)
    writer.changed()
    writer.changed()  # a timer, due in 0.05 s
    with lock:
        time.sleep(0.2)  # the timer fires and waits for the lock
        writer.close()
        writer.write_now()  # the final summary
    time.sleep(0.2)
    assert len(writes) == 2  # the first and the final one: the timer that waited wrote nothing


def test_a_failed_background_write_is_reported_then_superseded() -> None:
    import threading

    from rr_controlnet.errors import OutputWriteError
    from rr_controlnet.outputs.journal import SummaryWriter

    disk = {"full": False, "writes": 0}
    failed = threading.Event()

    def write() -> None:
        if disk["full"]:
            failed.set()
            raise OutputWriteError("summary.json: no space left on device", disk_full=True)
        disk["writes"] += 1

    writer = SummaryWriter(write, interval=0.05)
    writer.changed()
    disk["full"] = True
    writer.changed()
    assert failed.wait(10)  # the timer's write failed
    disk["full"] = False
    writer.close()
    writer.write_now()  # space again: the final write is tried, and succeeds
    assert disk["writes"] == 2

    disk["full"] = True
    failed.clear()
    writer.changed()
    assert failed.wait(10)
    with pytest.raises(OutputWriteError, match="no space left"):
        writer.changed()  # the batch learns of it at its next item
