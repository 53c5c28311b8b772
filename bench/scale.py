"""How a batch holds up as it grows: validate and run 1,000 and 20,000 items on the tiny model, 1 step.

For each size it writes a manifest of N items over one small photo (seeds differ), then measures:

- validate: seconds for `load_manifest` (every field, id and image checked), in this process;
- run: `rr-controlnet batch` in a child process: seconds to the first finished item, seconds per item
  over the whole run, the child's resident memory at 10%, 50% and 90% of the items and its peak,
  and the bytes it wrote (from /proc/<pid>/io) beside the bytes of the recordings and images it left;
- rerun: the same command again over the finished folder (every item checked and skipped).

Usage (from the repository root; 20,000 items take the better part of an hour on 2 cores)::

    python bench/scale.py --items 1000 20000 --json bench/results/scale.json
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
from typing import Final

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
class SizeFigures:
    items: int
    validate_seconds: float
    run: RunFigures
    rerun_seconds: float
    rerun_exit_code: int
    notes: list[str] = field(default_factory=list)


def write_manifest(folder: Path, count: int) -> Path:
    shutil.copy(IMAGE, folder / IMAGE.name)
    lines = ["version: 1", "model: tiny-sd15", "defaults: {prompt: a horse in a field, steps: 1, size: 64}", "items:"]
    lines += [f"  - {{id: item{index:05d}, image: {IMAGE.name}, seed: {index}}}" for index in range(count)]
    path = folder / "scale.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def time_validate(manifest: Path) -> float:
    from rr_controlnet.manifest import load_manifest

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
    return SizeFigures(count, validate_seconds, run, time.perf_counter() - started, rerun.returncode)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the batch process (OMP_NUM_THREADS)")
    parser.add_argument("--work", default=None, help="folder for the batches (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = parser.parse_args(argv)
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
    print(format_table(figures, machine))
    path = Path(args.json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "sizes": [asdict(size) for size in figures]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
