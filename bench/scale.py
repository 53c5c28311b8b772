"""How a batch holds up as it grows: validate and run 1,000 and 20,000 items on the tiny model, 1 step.

For each size it writes a manifest of N items over one small photo (seeds differ), then measures:

- validate: seconds for `load_manifest` (every field, id and image checked), in this process;
- run: `rr-controlnet batch` in a child process: seconds to the first finished item, seconds per item
  over the whole run, the child's resident memory at 10%, 50% and 90% of the items and its peak,
  and the bytes it wrote (from /proc/<pid>/io) beside the bytes of the recordings and images it left;
- rerun: the same command again over the finished folder (every item checked and skipped);
- the review page: seconds to write index.html and its data per item, and one item's review files
  (thumbnails, filmstrip, info.js: what the finishing thread writes), each as a share of an item's time;
  the page's bytes per item besides the images, and the images' own.

Then a review page of --page-items items (default 20,000) built from a synthetic summary whose items all
reuse the review files of one item of the first run (no 20,000 items are generated for it): seconds to
write it, its bytes per item, and the time to its first rows drawn in headless Chromium (median of 3).

Usage (from the repository root; 20,000 items take the better part of an hour on 2 cores)::

    python bench/scale.py --items 1000 20000 --json bench/results/scale.json

With --ray, instead: Ray against static shards on uneven items, and the object store's round trip
(bench/scale_ray.py, which says what it measures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
IMAGE: Final = ROOT / "manifests" / "images" / "horse.png"
POLL_SECONDS: Final = 1.0


@dataclass
class RunFigures:
    seconds: float
    seconds_to_first_item: float | None
    seconds_per_item: float
    cpu_seconds_per_item: float | None  # the child's user + system time: steadier than wall time on a busy machine
    rss_bytes_at: dict[str, int]  # "10%", "50%", "90%" of the items finished
    peak_rss_bytes: int
    bytes_written: int | None  # everything the child wrote, rewrites included
    recording_bytes: int  # the .rrd files it left
    image_bytes: int  # the item .png files it left
    other_bytes_left: int  # summary.json, summary.md, overview pages, batch.rbl
    exit_code: int


@dataclass
class PageFigures:
    """The review page of a batch: what writing it costs beside an item's time, and what it weighs."""

    items: int
    write_seconds: float  # write_review_page over the folder, every item's review files current
    write_ms_per_item: float
    item_files_ms: float | None  # one item's review files, as the finishing thread writes them (median of 20)
    share_of_item_time: float | None  # (write_ms_per_item + item_files_ms) / ms per item of the run
    bytes_per_item: float  # index.html, review/*.js and .css, every info.js: all but the images
    image_bytes_per_item: float  # thumbnails and filmstrips
    first_rows_ms: float | None = None  # headless Chromium: from navigation to the first rows drawn
    synthetic: bool = False  # items that reuse one item's review files (no generation)


@dataclass
class SizeFigures:
    items: int
    validate_seconds: float
    run: RunFigures
    rerun_seconds: float
    rerun_exit_code: int
    page: PageFigures | None = None
    notes: list[str] = field(default_factory=list)


def write_manifest(folder: Path, count: int) -> Path:
    shutil.copy(IMAGE, folder / IMAGE.name)
    lines = ["version: 1", "model: tiny-sd15", "defaults: {prompt: a horse in a field, steps: 1, size: 64}", "items:"]
    lines += [f"  - {{id: item{index:05d}, image: {IMAGE.name}, seed: {index}}}" for index in range(count)]
    path = folder / "scale.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def time_validate(manifest: Path) -> float:
    from rr_controlnet.manifest.document import load_manifest

    started = time.perf_counter()
    load_manifest(manifest)
    return time.perf_counter() - started


def count_outputs(out: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(out) if entry.name.endswith(".png") and entry.name.startswith("item"))
    except FileNotFoundError:
        return 0


def run_batch(manifest: Path, out: Path, count: int, env: dict[str, str]) -> RunFigures:
    import psutil

    command = [sys.executable, "-m", "rr_controlnet", "batch", str(manifest), "--out", str(out), "--no-progress"]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    first_item = None
    rss_at: dict[str, int] = {}
    peak = 0
    written = None
    cpu = None
    while child.poll() is None:
        try:
            rss = process.memory_info().rss
            written = process.io_counters().write_bytes if hasattr(process, "io_counters") else None
            times = process.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss)
        finished = count_outputs(out)
        if finished and first_item is None:
            first_item = time.perf_counter() - started
        for share in (10, 50, 90):
            if f"{share}%" not in rss_at and finished >= count * share / 100:
                rss_at[f"{share}%"] = rss
        time.sleep(POLL_SECONDS)
    _, stderr = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    sizes = {"rrd": 0, "png": 0, "other": 0}
    for entry in os.scandir(out):
        kind = "rrd" if entry.name.endswith(".rrd") else "png" if entry.name.startswith("item") else "other"
        sizes[kind] += entry.stat().st_size
    return RunFigures(
        seconds=seconds,
        seconds_to_first_item=first_item,
        seconds_per_item=seconds / count,
        cpu_seconds_per_item=cpu / count if cpu is not None else None,
        rss_bytes_at=rss_at,
        peak_rss_bytes=peak,
        bytes_written=written,
        recording_bytes=sizes["rrd"],
        image_bytes=sizes["png"],
        other_bytes_left=sizes["other"],
        exit_code=child.returncode,
    )


def measure(count: int, work: Path, env: dict[str, str]) -> SizeFigures:
    folder = work / f"items-{count}"
    folder.mkdir(parents=True)
    manifest = write_manifest(folder, count)
    validate_seconds = time_validate(manifest)
    print(f"{count} items: validate {validate_seconds:.2f} s; running...", file=sys.stderr, flush=True)
    run = run_batch(manifest, folder / "out", count, env)
    print(f"{count} items: {run.seconds:.0f} s, {run.seconds_per_item * 1000:.0f} ms/item", file=sys.stderr, flush=True)
    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "rr_controlnet",
        "batch",
        str(manifest),
        "--out",
        str(folder / "out"),
        "--no-progress",
    ]
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    rerun_seconds = time.perf_counter() - started
    page = page_figures(folder / "out", run.seconds_per_item)
    return SizeFigures(count, validate_seconds, run, rerun_seconds, rerun.returncode, page)


# --- the review page -----------------------------------------------------------------------------


def page_figures(out: Path, seconds_per_item: float | None) -> PageFigures:
    from rr_controlnet.outputs import OutputFolder
    from rr_controlnet.review.pages import write_review_page

    summary = OutputFolder(out).read()
    started = time.perf_counter()
    write_review_page(out, summary)
    seconds = time.perf_counter() - started
    count = len(summary.items)
    files_ms = item_files_ms(out, summary)
    text_bytes, image_bytes = page_bytes(out)
    share = None
    if seconds_per_item and files_ms is not None:
        share = (seconds * 1000 / count + files_ms) / (seconds_per_item * 1000)
    return PageFigures(count, seconds, seconds * 1000 / count, files_ms, share, text_bytes / count, image_bytes / count)


def item_files_ms(out: Path, summary: Any) -> float | None:
    """What one item's review files cost: made from its files once, then written 20 times."""
    import statistics

    from rr_controlnet.review.pages import write_item_assets
    from rr_controlnet.review.pages.from_files import images_from_files

    outcome = next((outcome for outcome in summary.items if outcome.status == "done"), None)
    if outcome is None:
        return None
    images = images_from_files(out, outcome)
    times = []
    with tempfile.TemporaryDirectory(prefix="rr-controlnet-item-files-") as scratch:
        for _ in range(20):
            started = time.perf_counter()
            write_item_assets(Path(scratch), outcome.id, images, "bench")
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def page_bytes(out: Path) -> tuple[int, int]:
    """(bytes of the page besides its images, bytes of its images): index.html and everything in review/."""
    text, images = (out / "index.html").stat().st_size, 0
    for path in (out / "review").rglob("*"):
        if path.is_file():
            size = path.stat().st_size
            if path.suffix in (".jpg", ".png"):
                images += size
            else:
                text += size
    return text, images


def synthetic_page(source: Path, work: Path, count: int, browser: object = None) -> PageFigures:
    """A page of `count` items that all reuse one done item's review files (linked, not copied); drawn in
    `browser` (a Playwright browser), or a Chromium of its own."""
    from rr_controlnet.outputs import BatchSummary
    from rr_controlnet.review.pages import write_review_page
    from rr_controlnet.review.pages.items import info_script, read_item_info

    summary = json.loads((source / "summary.json").read_text())
    done = next(entry for entry in summary["items"] if entry["status"] == "done")
    images = source / "review" / "items" / done["id"]
    info = read_item_info(source, done["id"])
    out = work / f"page-{count}"
    items_folder = out / "review" / "items"
    items_folder.mkdir(parents=True)
    entries = []
    for index in range(count):
        item_id = f"page{index:05d}"
        folder = items_folder / item_id
        folder.mkdir()
        for path in images.iterdir():
            if path.name != "info.js":
                (folder / path.name).symlink_to(path)
        (folder / "info.js").write_text(info_script(dict(info, id=item_id)))
        entries.append(dict(done, id=item_id, seed=index, files=[], checksums={}))
    started = time.perf_counter()
    page_summary = dict(summary, items=entries, item_ids=[entry["id"] for entry in entries])
    write_review_page(out, BatchSummary.from_document(page_summary))
    seconds = time.perf_counter() - started
    text_bytes, _ = page_bytes(out)
    image_bytes = sum(path.stat().st_size for path in images.iterdir() if path.suffix in (".jpg", ".png"))
    return PageFigures(
        count,
        seconds,
        seconds * 1000 / count,
        None,
        None,
        text_bytes / count,
        image_bytes,
        first_rows_ms(out / "index.html", browser),
        synthetic=True,
    )


def first_rows_ms(page: Path, browser: object = None, repeats: int = 3) -> float | None:
    """Milliseconds from navigation to the first rows drawn (the page's own mark), median of `repeats`
    fresh tabs in headless Chromium; None where Playwright or Chromium is missing."""
    import statistics

    if browser is None:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            return None
        if chromium is None:
            return None
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                return first_rows_ms(page, launched, repeats)
            finally:
                launched.close()
    times = []
    for _ in range(repeats):
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.goto(page.resolve().as_uri())
        tab.wait_for_function("() => window.rrReviewPainted !== undefined", timeout=60_000)
        times.append(tab.evaluate("() => window.rrReviewPainted"))
        tab.close()
    return statistics.median(times)


def format_table(figures: Sequence[SizeFigures], machine: str) -> str:
    mib = 2**20
    lines = [
        f"machine: {machine}",
        "",
        f"{'items':>6} {'validate s':>10} {'first item s':>12} {'ms/item':>8} {'cpu ms/item':>11} "
        f"{'RSS 10%/50%/90% MiB':>20} {'peak MiB':>8} {'written MiB':>11} {'rrd MiB':>8} {'png MiB':>8} "
        f"{'other MiB':>9} {'rerun s':>8}",
    ]
    for size in figures:
        run = size.run
        rss = "/".join(f"{run.rss_bytes_at.get(share, 0) / mib:.0f}" for share in ("10%", "50%", "90%"))
        written = f"{run.bytes_written / mib:,.1f}" if run.bytes_written is not None else "-"
        first = f"{run.seconds_to_first_item:.1f}" if run.seconds_to_first_item is not None else "-"
        cpu = f"{run.cpu_seconds_per_item * 1000:.1f}" if run.cpu_seconds_per_item is not None else "-"
        lines.append(
            f"{size.items:>6} {size.validate_seconds:>10.2f} {first:>12} {run.seconds_per_item * 1000:>8.1f} {cpu:>11} "
            f"{rss:>20} {run.peak_rss_bytes / mib:>8.0f} {written:>11} {run.recording_bytes / mib:>8.1f} "
            f"{run.image_bytes / mib:>8.1f} {run.other_bytes_left / mib:>9.2f} {size.rerun_seconds:>8.1f}"
        )
    lines += [
        "",
        "written: every byte the batch process wrote (rewrites of summary.json, the journal, overview pages",
        "included); rrd/png: the item files left; other: summary.json, summary.md, overview pages, batch.rbl.",
    ]
    return "\n".join(lines)


def format_page_table(pages: Sequence[PageFigures]) -> str:
    lines = [
        "",
        "review page (index.html):",
        "",
        f"{'items':>6} {'write s':>8} {'page ms/item':>12} {'item files ms':>13} {'share of item':>13} "
        f"{'kB/item':>8} {'images kB/item':>14} {'first rows ms':>13}",
    ]
    for page in pages:
        files = f"{page.item_files_ms:.1f}" if page.item_files_ms is not None else "-"
        share = f"{page.share_of_item_time:.2%}" if page.share_of_item_time is not None else "-"
        first = f"{page.first_rows_ms:.0f}" if page.first_rows_ms is not None else "-"
        label = f"{page.items}{'*' if page.synthetic else ''}"
        lines.append(
            f"{label:>6} {page.write_seconds:>8.2f} {page.write_ms_per_item:>12.3f} {files:>13} {share:>13} "
            f"{page.bytes_per_item / 1024:>8.2f} {page.image_bytes_per_item / 1024:>14.1f} {first:>13}"
        )
    lines += [
        "",
        "page ms/item: writing index.html and review/data.js once the batch is done; item files ms: one item's",
        "thumbnails, filmstrip and info.js, written by the finishing thread beside the next item's generation;",
        "share of item: both against the run's seconds per item. kB/item: the page's bytes besides its images.",
        "* a synthetic summary whose items reuse one item's review files: no such batch was generated.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--page-items", type=int, default=20000, help="a synthetic review page of this many items")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the batch process (OMP_NUM_THREADS)")
    parser.add_argument("--work", default=None, help="folder for the batches (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path", default=str(ROOT / "bench" / "results" / "scale.json"))
    parser.add_argument("--ray", action="store_true", help="Ray vs static shards (bench/scale_ray.py); then exit")
    given = list(sys.argv[1:] if argv is None else argv)
    if "--ray" in given:
        import scale_ray

        return scale_ray.main([arg for arg in given if arg != "--ray"])
    args = parser.parse_args(given)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "RR_CONTROLNET_CACHE": os.environ.get(
            "RR_CONTROLNET_CACHE", str(Path(tempfile.gettempdir()) / "rr-controlnet-bench-cache")
        ),
    }
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    with tempfile.TemporaryDirectory(prefix="rr-controlnet-scale-") as temporary:
        work = Path(args.work) if args.work else Path(temporary)
        figures = [measure(count, work, env) for count in args.items]
        pages = [size.page for size in figures if size.page is not None]
        if args.page_items:
            print(f"review page of {args.page_items} items (synthetic)...", file=sys.stderr, flush=True)
            pages.append(synthetic_page(work / f"items-{args.items[0]}" / "out", work, args.page_items))
    print(format_table(figures, machine))
    print(format_page_table(pages))
    path = Path(args.json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [asdict(size) for size in figures]
    document = {"machine": machine, "sizes": sizes, "pages": [asdict(page) for page in pages]}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
