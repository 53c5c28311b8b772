"""Ray against static shards on a batch of uneven items, and what the object-store round trip costs.

Two workers, one torch thread each, on the tiny model (CPU), for two manifests of the same 24 items
(4 photos x 3 seeds x sizes 320 and 64 px, 100 steps; "heavy/light" says what a 320 px item costs in
64 px ones):

- "sweep": as a size sweep lays them out, heavy and light variants alternating, which round-robin
  shards split into one heavy half and one light half;
- "shuffled": the same items in a fixed random order, a more typical mix.

For each, the wall time of the whole command (start to exit) of:
- `--ray-address ADDRESS --workers 2`, on a Ray cluster already running (`ray start --head`, as a
  cluster is), and for the first manifest also `--ray` alone, which starts a local Ray of its own;
- static halves: `--shard 0/2` and `--shard 1/2` run side by side, then `rr-controlnet summarize` (which
  writes the review files a whole batch writes);
- the ideal: a one-process run's fixed cost (start, load, review files) plus half its items' total time.

Then the per-item overhead of the round trip (inputs out, encoded files back through the object store,
written by the driver): 24 and 48 small items (64 px, 2 steps) on one Ray worker against one process;
the difference of the two sizes' differences, per item, leaves every fixed cost out.

With --ray-data, the "sweep" manifest also through Ray Data (`map_batches` over an actor pool of the same
workers; needs `pip install 'ray[data]'`), the alternative to the actor pool of ray_engine.

Usage (from the repository root; about 15 minutes on 2 cores)::

    python bench/scale.py --ray --json bench/results/ray.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from rr_controlnet.outputs.names import SUMMARY_NAME, summary_name
from rr_controlnet.spec import Shard

ROOT: Final = Path(__file__).resolve().parent.parent
IMAGES: Final = ("astronaut.png", "chelsea.png", "coffee.png", "horse.png")
SEEDS: Final = (1, 2, 3)
SIZES: Final = (320, 64)
STEPS: Final = 100
SMALL_ITEMS: Final = (24, 48)


def uneven_items() -> list[dict[str, Any]]:
    """The 24 items, heavy and light alternating as a size sweep orders its variants."""
    return [
        {"id": f"{Path(image).stem}-s{seed}-{size}", "image": image, "seed": seed, "size": size}
        for image in IMAGES
        for seed in SEEDS
        for size in SIZES
    ]


def write_manifest(folder: Path, name: str, items: list[dict[str, Any]], steps: int) -> Path:
    for image in IMAGES:
        shutil.copy(ROOT / "manifests" / "images" / image, folder / image)
    document = {
        "version": 1,
        "model": "tiny-sd15",
        "defaults": {"prompt": "a photo, detailed", "steps": steps, "size": 64},
        "items": items,
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(document, indent=1))  # JSON is YAML
    return path


def command(manifest: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rr_controlnet", "batch", str(manifest), "--out", str(out), "--no-progress", *args]


@contextlib.contextmanager
def ray_head(env: dict[str, str], cpus: int = 2) -> Iterator[str]:
    """A one-machine Ray cluster, started as `ray start --head` starts one (token authentication on, as Ray
    2.59 and later have it), stopped with its processes afterwards; its address. Joining it by address
    takes RAY_AUTH_MODE=token (in `env`); `--ray-address auto` finds the token itself."""
    port = free_port()
    start = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}"]
    head = subprocess.Popen(
        [*start, f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not names_cluster(port):  # Ray's note of the cluster is written once the head is up
            if head.poll() is not None:
                raise SystemExit("ray start --head failed")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(head.pid, signal.SIGTERM)  # it stops its processes in 2 s (its whole group: in 30)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        if names_cluster(port):  # `ray stop` would remove it, but also stops every other Ray on the machine
            CLUSTER_NOTE.unlink()


CLUSTER_NOTE = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


def names_cluster(port: int) -> bool:
    """Whether Ray's note of the latest cluster (which `--ray-address auto` reads) names the one on `port`."""
    try:
        return CLUSTER_NOTE.read_text().strip().endswith(f":{port}")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(commands: Sequence[list[str]], env: dict[str, str]) -> float:
    """Run the commands side by side; seconds until the last has exited (each must exit 0)."""
    started = time.perf_counter()
    children = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    for child in children:
        _, stderr = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(child.args)} exited {child.returncode}:\n{stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def summary(out: Path, name: str = SUMMARY_NAME) -> dict[str, Any]:
    return json.loads((out / name).read_text())


def compare_engines(manifest: Path, work: Path, env: dict[str, str], address: str, own_ray: bool) -> dict[str, Any]:
    """One manifest: a local run (the work), static halves, Ray; wall seconds of each."""
    name = manifest.stem
    local_out = work / f"{name}-local"
    local_wall = run([command(manifest, local_out, "--threads", "1")], env)
    local = summary(local_out)
    work_seconds = sum(item["seconds"] for item in local["items"])
    by_size = {size: [item["seconds"] for item in local["items"] if item["id"].endswith(f"-{size}")] for size in SIZES}
    heavy, light = (sum(seconds) / len(seconds) for seconds in by_size.values())
    fixed = local_wall - work_seconds
    ideal = fixed + work_seconds / 2

    halves_out = work / f"{name}-halves"
    halves = [command(manifest, halves_out, "--threads", "1", "--shard", f"{i}/2") for i in range(2)]
    halves_wall = run(halves, env)
    shard_work = [
        sum(item["seconds"] for item in summary(halves_out, summary_name(Shard(i, 2)))["items"]) for i in range(2)
    ]
    summarize = [sys.executable, "-m", "rr_controlnet", "summarize", str(halves_out)]
    halves_wall += run([summarize], env)  # merged, with the review files a whole batch writes

    ray_out = work / f"{name}-ray"
    ray_wall = run([command(manifest, ray_out, "--threads", "1", "--ray-address", address, "--workers", "2")], env)
    own_ray_wall = None
    if own_ray:
        own_ray_wall = run(
            [command(manifest, work / f"{name}-own-ray", "--threads", "1", "--ray", "--workers", "2")], env
        )
    return {
        "manifest": name,
        "items": len(local["items"]),
        "work_seconds": round(work_seconds, 2),
        "heavy_to_light": round(heavy / light, 2),
        "fixed_seconds": round(fixed, 2),
        "ideal_seconds": round(ideal, 2),
        "local_seconds": round(local_wall, 2),
        "static_halves_seconds": round(halves_wall, 2),
        "static_shard_work_seconds": [round(s, 2) for s in shard_work],
        "ray_seconds": round(ray_wall, 2),
        "own_ray_seconds": round(own_ray_wall, 2) if own_ray_wall is not None else None,
        "ray_vs_ideal": round(ray_wall / ideal, 3),
        "static_vs_ideal": round(halves_wall / ideal, 3),
        "ray_same_pngs_as_local": all(
            (ray_out / f"{item['id']}.png").read_bytes() == (local_out / f"{item['id']}.png").read_bytes()
            for item in local["items"]
        ),
    }


def round_trip_overhead(work: Path, env: dict[str, str], address: str) -> dict[str, Any]:
    """Seconds per item that one Ray worker adds to one local process, on small items: the slope of the
    whole command's wall time over two batch sizes, Ray's against the local one's (fixed costs cancel)."""
    walls: dict[str, dict[int, float]] = {"local": {}, "ray": {}}
    for count in SMALL_ITEMS:
        items = [{"id": f"small-{n:02d}", "image": IMAGES[n % 4], "seed": n} for n in range(count)]
        manifest = write_manifest(work, f"small-{count}", items, steps=2)
        local = command(manifest, work / f"small-{count}-local", "--threads", "1")
        on_ray = command(manifest, work / f"small-{count}-ray", "--threads", "1", "--ray-address", address)
        walls["local"][count] = run([local], env)
        walls["ray"][count] = run([[*on_ray, "--workers", "1"]], env)
    fewer, more = SMALL_ITEMS
    slopes = {engine: (wall[more] - wall[fewer]) / (more - fewer) for engine, wall in walls.items()}
    out = work / f"small-{more}-ray"
    back = sum((out / name).stat().st_size for item in summary(out)["items"] for name in item["files"]) / more
    return {
        "items": list(SMALL_ITEMS),
        "wall_seconds": {engine: {str(n): round(w, 2) for n, w in wall.items()} for engine, wall in walls.items()},
        "local_seconds_per_item": round(slopes["local"], 4),
        "ray_seconds_per_item": round(slopes["ray"], 4),
        "overhead_seconds_per_item": round(slopes["ray"] - slopes["local"], 4),
        "bytes_back_per_item": round(back),
    }


# --- Ray Data, for comparison --------------------------------------------------------------------------


def run_on_ray_data(manifest_path: Path, out: Path) -> None:
    """The manifest's items through Ray Data's map_batches over two actors (ray_workers.ItemWorker), the
    results written by this process as ray_engine's driver writes them. No resume, no lock, no summary:
    only what the timing needs."""
    import ray

    from rr_controlnet.manifest.document import load_manifest
    from rr_controlnet.models.loading import Runtime
    from rr_controlnet.outputs import OutputFolder
    from rr_controlnet.recording.layout import batch_properties, run_recording_id
    from rr_controlnet.recording.write import RecordingOptions
    from rr_controlnet.run.delivery import deliver
    from rr_controlnet.run.plan import plan_items
    from rr_controlnet.run.ray.workers import ItemWorker, RunContext, WorkerSetup
    from rr_controlnet.spec import StopRequest

    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    manifest = load_manifest(manifest_path)
    recording = RecordingOptions()
    planned = plan_items(manifest, "fp32", None, {"preview": recording.preview, "latent_every": recording.latent_every})
    setup = WorkerSetup(manifest, Runtime("cpu", "fp32"), recording, batch_size=1, threads=1)
    out.mkdir(parents=True, exist_ok=True)
    context = RunContext(out, run_recording_id(out), batch_properties(manifest.path, out, time.time_ns()))

    class Generate:
        def __init__(self) -> None:
            self.worker = ItemWorker(0, setup)
            self.worker.load()

        def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
            item = planned[int(batch["index"][0])]
            result = self.worker.run(context, [item], [item.item.image], item.item.image.read_bytes())
            return {"result": [pickle.dumps(result)]}

    rows = ray.data.from_items([{"index": n} for n in range(len(planned))], override_num_blocks=len(planned))
    folder, stop = OutputFolder(out), StopRequest()
    for row in rows.map_batches(Generate, batch_size=1, concurrency=2, num_cpus=1).iter_rows():
        for finished in pickle.loads(row["result"]).finished:
            deliver(folder, finished, stop, print)
    ray.shutdown()


def ray_data_seconds(manifest: Path, work: Path, env: dict[str, str]) -> float:
    out = work / f"{manifest.stem}-ray-data"
    return round(run([[sys.executable, __file__, "--ray-data-run", str(manifest), str(out)]], env), 2)


# --- the report ------------------------------------------------------------------------------------------


def format_table(engines: Sequence[dict[str, Any]], overhead: dict[str, Any], machine: str) -> str:
    lines = [
        f"Ray vs static shards, 2 workers x 1 thread, tiny-sd15 on {machine}; "
        f"a heavy item costs {engines[0]['heavy_to_light']:.1f} light ones",
        "",
        "| manifest | items | work (s) | ideal (s) | --ray on a cluster (s) | static halves (s) "
        "| --ray / ideal | halves / ideal | --ray, own local Ray (s) | Ray Data (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in engines:
        own = f"{e['own_ray_seconds']:.1f}" if e.get("own_ray_seconds") is not None else "-"
        data = f"{e['ray_data_seconds']:.1f}" if e.get("ray_data_seconds") is not None else "-"
        lines.append(
            f"| {e['manifest']} | {e['items']} | {e['work_seconds']:.1f} | {e['ideal_seconds']:.1f} "
            f"| {e['ray_seconds']:.1f} | {e['static_halves_seconds']:.1f} "
            f"| {e['ray_vs_ideal']:.2f} | {e['static_vs_ideal']:.2f} | {own} | {data} |"
        )
    lines += [
        "",
        f"Round trip, {overhead['items'][0]} and {overhead['items'][1]} small items on one Ray worker vs one "
        f"process: {overhead['overhead_seconds_per_item'] * 1000:+.0f} ms per item "
        f"({overhead['local_seconds_per_item'] * 1000:.0f} ms per item locally; "
        f"{overhead['bytes_back_per_item'] / 1000:.0f} kB back per item)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=None, help="folder for the batches (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path", default=str(ROOT / "bench" / "results" / "ray.json"))
    parser.add_argument("--ray-data", action="store_true", help="also time Ray Data's map_batches (ray[data])")
    parser.add_argument("--ray-data-run", nargs=2, metavar=("MANIFEST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ray_data_run:
        run_on_ray_data(Path(args.ray_data_run[0]), Path(args.ray_data_run[1]))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token"}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory(prefix="rr-controlnet-ray-") as temporary:
        work = Path(args.work) if args.work else Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        items = uneven_items()
        shuffled = random.Random(7).sample(items, len(items))
        manifests = [write_manifest(work, "sweep", items, STEPS), write_manifest(work, "shuffled", shuffled, STEPS)]
        engines = []
        with ray_head(env) as address:
            for manifest in manifests:
                print(f"{manifest.stem}...", file=sys.stderr, flush=True)
                engines.append(compare_engines(manifest, work, env, address, own_ray=manifest == manifests[0]))
            print("round trip...", file=sys.stderr, flush=True)
            overhead = round_trip_overhead(work, env, address)
        if args.ray_data:
            engines[0]["ray_data_seconds"] = ray_data_seconds(manifests[0], work, env)
    print(format_table(engines, overhead, machine))
    path = Path(args.json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine, "engines": engines, "round_trip": overhead}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
