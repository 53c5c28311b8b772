"""What recording costs: the bare pipeline vs rr-controlnet's recording vs the original example's.

The same items (model, size, steps, seeds, real photos from manifests/images/) run in one process,
three ways, interleaved per repeat (bare, rr-controlnet, original, bare, ...) so drift hits all alike:

- ``bare``: ``model.pipe(...)`` with rr_controlnet.generation.generate.pipeline_arguments, no callback.
- ``rr-controlnet``: what the batch does per item, through its own runner (GroupRunner.run_group):
  inputs, prompts and parameters recorded, every step's latent tensor and x0 JPEG preview, the output
  PNG encoded and written, the .rrd verified and written. The batch finishes an item on a worker thread
  that overlaps the next item; here finishing counts in full (an upper bound).
- ``original``: Rerun's controlnet example: a full VAE decode of x_t every step, logged as a raw float32
  HxWx3 image, plus the latent as a float32 tensor, into a saved RecordingStream.

Model loading and image preparation (decode, resize, Canny) happen once, outside the timed region. One
warm-up pass of each way over the first item is not counted. Seconds per item are the median over the
repeats; peak RSS is sampled in a thread while each way runs.

Usage (from the repository root)::

    export RR_CONTROLNET_CACHE=/tmp/bench-cache
    python bench/benchmark.py --model tiny-sd15 --size 512 --steps 10 --items 2 --repeats 3
    python bench/benchmark.py --model random-sd15 --size 256 --steps 10 --items 2 --repeats 2 --threads 1
    python bench/benchmark.py --model sd15 --device cuda --size 512 --steps 30 --json bench/results/sd15.json

Results go to stdout as a table and to ``--json`` (default bench/results/latest.json). On a small CPU that
other work shares, torch's default threads wait on each other (a tiny model ran 15x slower with 2 threads than
with 1 on a busy 2-core machine): pass ``--threads 1`` there.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.models.families import FAMILIES
from rr_controlnet.models.presets import PRESETS
from rr_controlnet.outputs.names import image_name, recording_name
from rr_controlnet.run.original import ORIGINAL_NEGATIVE_PROMPT, ORIGINAL_PROMPT

ROOT: Final = Path(__file__).resolve().parent.parent
IMAGES_DIR: Final = ROOT / "manifests" / "images"
IMAGE_NAMES: Final = ("astronaut.png", "chelsea.png", "coffee.png", "horse.png")
DEFAULT_JSON: Final = Path(__file__).resolve().parent / "results" / "latest.json"
WAYS: Final = ("bare", "rr-controlnet", "original")
MODELS: Final = ("random-sd15", "tiny-sd15", "tiny-sdxl", "random-sdxl", "sd15", "sdxl")
ORIGINAL_APPLICATION_ID: Final = "rerun_example_controlnet"
# What the batch records per step by default: every latent and an x0 preview.
RECORDING: Final = {"preview": "x0", "latent_every": 1}
RSS_SAMPLE_SECONDS: Final = 0.005


@dataclass(frozen=True)
class BenchConfig:
    model: str
    size: int
    steps: int
    items: int
    repeats: int
    device: str
    dtype: str
    threads: int  # torch CPU threads; 0 leaves torch's default
    out: str | None
    json_path: str
    adherence: bool = True  # score each output's edges, as a batch does (needs scikit-image and SciPy)


@dataclass
class BenchItem:
    """An item prepared once (decoded, resized, edge-mapped) by the batch's own runner."""

    prepared: Any  # rr_controlnet.run.runner.PreparedItem

    @property
    def id(self) -> str:
        return self.prepared.id

    @property
    def job(self) -> Any:
        from rr_controlnet.generation.generate import GenerationJob

        return GenerationJob(self.id, self.prepared.planned.item.params, self.prepared.control)


@dataclass
class WayRun:
    """One pass of one way over all items."""

    way: str
    seconds: list[float]  # per item, wall clock
    cpu_seconds: float  # all items: CPU time of the whole process (every thread, Rerun's included)
    callback_seconds: float  # all items: time inside the per-step callback
    rrd_bytes: list[int]  # per item; empty for bare
    peak_rss_bytes: int
    start_rss_bytes: int
    peak_gpu_bytes: int | None
    images: list[np.ndarray] = field(repr=False)  # HxWx3 uint8 per item


@dataclass
class WayResult:
    way: str
    seconds_per_item: float  # median over repeats
    seconds_per_item_runs: list[float]
    ratio_vs_bare: float
    cpu_seconds_per_item: float  # median over repeats; less sensitive than wall time to other load
    cpu_ratio_vs_bare: float
    callback_seconds_per_item: float  # median over repeats
    rrd_bytes_per_item: float | None
    peak_rss_bytes: int  # max over measured repeats
    start_rss_bytes: int  # RSS when the way's first measured run began
    peak_gpu_bytes: int | None
    max_output_difference_vs_bare: int | None  # uint8 levels; 0 means the same images


@dataclass
class Machine:
    cpu: str
    cpu_count: int
    platform: str
    python: str
    torch: str
    torch_threads: int
    diffusers: str
    rerun_sdk: str
    device: str
    device_name: str
    dtype: str
    gpu_driver: str = ""  # NVIDIA driver version, when on CUDA
    cuda: str = ""  # the CUDA version torch was built with
    gpu_memory_bytes: int | None = None


@dataclass
class BenchReport:
    config: BenchConfig
    machine: Machine
    model_load_seconds: float
    input_bytes_per_item: float
    results: list[WayResult]
    warmup: str = "one pass of each way over the first item, not counted"
    max_rss_bytes_process: int = 0  # ru_maxrss at the end: the whole process, model build included
    load_average_start: list[float] = field(default_factory=list)  # 1, 5, 15 min: other work on the machine
    load_average_end: list[float] = field(default_factory=list)


class PeakRss:
    """Samples this process's resident memory in a thread; `peak` is the highest value seen."""

    def __init__(self, interval: float = RSS_SAMPLE_SECONDS):
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None

    def __enter__(self) -> PeakRss:
        try:
            import psutil
        except ImportError:  # ru_maxrss instead: the process's peak so far, an upper bound
            self.start = self.peak = _ru_maxrss_bytes()
            return self
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak = _ru_maxrss_bytes()
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _ru_maxrss_bytes() -> int:
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024  # bytes on macOS, KiB on Linux


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random-sd15", choices=MODELS)
    parser.add_argument("--size", type=int, default=512, help="square side in pixels, a multiple of 8")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--items", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="measured passes per way, after one warm-up")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu", "mps"))
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (default: torch's choice); 1 is far steadier on a CPU shared with other work",
    )
    parser.add_argument("--out", default=None, help="folder for the recordings (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path", default=str(DEFAULT_JSON), help="where to write the results")
    parser.add_argument(
        "--no-adherence",
        dest="adherence",
        action="store_false",
        help="skip the edge scores per item (for machines without scikit-image and SciPy)",
    )
    args = parser.parse_args(argv)
    if args.size <= 0 or args.size % 8:
        parser.error(f"--size must be a positive multiple of 8, got {args.size}")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    for name in ("steps", "items", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return BenchConfig(**vars(args))


def bench_manifest(config: BenchConfig) -> Any:
    """The benchmark's items as a manifest: the bundled photos (cycled), seed = position."""
    from rr_controlnet.manifest.document import parse_manifest

    items = []
    for index in range(config.items):
        name = IMAGE_NAMES[index % len(IMAGE_NAMES)]
        stem = Path(name).stem
        item_id = stem if index < len(IMAGE_NAMES) else f"{stem}-{index // len(IMAGE_NAMES)}"
        items.append({"id": item_id, "image": name, "seed": index})
    defaults = {
        "prompt": ORIGINAL_PROMPT,
        "negative_prompt": ORIGINAL_NEGATIVE_PROMPT,
        "steps": config.steps,
        "size": config.size,
        "controlnet_conditioning_scale": 0.5,
    }
    if not FAMILIES[PRESETS[config.model].family].true_cfg:  # Flux: guidance distilled, no negative prompt
        del defaults["negative_prompt"]
    document = {"version": 1, "model": config.model, "defaults": defaults, "items": items}
    return parse_manifest(document, IMAGES_DIR / "benchmark.yaml")


def prepare_items(runner: Any, manifest: Any, dtype_name: str) -> list[BenchItem]:
    """Every item decoded and edge-mapped once, outside the timed region."""
    from rr_controlnet.run.plan import plan_items
    from rr_controlnet.run.runner import PreparedItem

    prepared = [runner.prepare(planned) for planned in plan_items(manifest, dtype_name, recording=RECORDING)]
    failed = [entry for entry in prepared if not isinstance(entry, PreparedItem)]
    if failed:
        raise RuntimeError(f"items could not be prepared: {failed}")
    return [BenchItem(entry) for entry in prepared]


def _synchronize(model: Any) -> None:
    import torch

    if model.runtime.device.startswith("cuda"):
        torch.cuda.synchronize()


class BareWay:
    """(a) The pipeline call alone."""

    name = "bare"

    def __init__(self, model: Any):
        self.model = model

    def run_item(self, bench_item: BenchItem, out_dir: Path) -> tuple[np.ndarray, float, int | None]:
        import torch

        from rr_controlnet.generation.generate import pipeline_arguments, to_uint8

        with torch.inference_mode():
            output = self.model.pipe(**pipeline_arguments([bench_item.job], self.model.family))
        return to_uint8(output.images[0]), 0.0, None


class RrControlnetWay:
    """(b) One item as the batch generates and records it: its runner's run_group, batch size 1."""

    def __init__(self, runner: Any, name: str = WAYS[1]):
        self.name = name
        self.runner = runner
        self.model = runner.model

    def run_item(self, bench_item: BenchItem, out_dir: Path) -> tuple[np.ndarray, float, int | None]:
        from PIL import Image

        step_seconds = self.runner.step_seconds
        (outcome,) = self.runner.run_group([bench_item.prepared])
        if outcome.status != "done":
            raise RuntimeError(f"item {bench_item.id!r}: {outcome.error}")
        callback_seconds = self.runner.step_seconds - step_seconds
        image = np.asarray(Image.open(self.runner.out_dir / image_name(bench_item.id)))
        return image, callback_seconds, (self.runner.out_dir / recording_name(bench_item.id)).stat().st_size


class OriginalWay:
    """(c) Rerun's controlnet example: full VAE decode per step, raw float32 image + float32 latent."""

    name = "original"

    def __init__(self, model: Any):
        self.model = model

    def run_item(self, bench_item: BenchItem, out_dir: Path) -> tuple[np.ndarray, float, int | None]:
        import rerun as rr
        import rerun.blueprint as rrb
        import torch

        pipe = self.model.pipe
        from rr_controlnet.generation.generate import pipeline_arguments, to_uint8

        path = out_dir / self.name / recording_name(bench_item.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = rr.RecordingStream(ORIGINAL_APPLICATION_ID, recording_id=str(uuid.uuid4()))
        blueprint = rrb.Horizontal(
            rrb.Grid(
                rrb.Spatial2DView(origin="input/raw"),
                rrb.Spatial2DView(origin="input/canny"),
                rrb.Vertical(
                    rrb.TextDocumentView(origin="positive_prompt"),
                    rrb.TextDocumentView(origin="negative_prompt"),
                ),
                rrb.TensorView(origin="latent"),
            ),
            rrb.Spatial2DView(origin="output"),
        )
        stream.save(path, default_blueprint=blueprint)
        prepared = bench_item.prepared
        params = prepared.planned.item.params
        stream.log("input/raw", rr.Image(prepared.source.pixels), static=True)
        stream.log("input/canny", rr.Image(prepared.control.canny_rgb), static=True)
        stream.log("positive_prompt", rr.TextDocument(params.prompt), static=True)
        stream.log("negative_prompt", rr.TextDocument(params.negative_prompt), static=True)
        callback_seconds = 0.0

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal callback_seconds
            started = time.perf_counter()
            # The example's set_time("timestep", duration=t) raises on today's versions; sequence works.
            stream.set_time("iteration", sequence=step)
            stream.set_time("timestep", sequence=int(timestep))
            latents = tensors["latents"]
            decoded = pipeline.vae.decode(latents / pipeline.vae.config.scaling_factor, return_dict=False)[0]
            image = pipeline.image_processor.postprocess(decoded, output_type="np")[0]  # HxWx3 float32
            stream.log("output", rr.Image(image))
            latent = latents[0].detach().float().cpu().numpy()
            stream.log("latent", rr.Tensor(latent, dim_names=["channel", "height", "width"]))
            callback_seconds += time.perf_counter() - started
            return tensors

        with torch.inference_mode():
            output = pipe(
                **pipeline_arguments([bench_item.job]),
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        image = to_uint8(output.images[0])
        stream.log("output", rr.Image(image))
        stream.flush()
        stream.disconnect()
        return image, callback_seconds, path.stat().st_size


def gpu_resident_bytes(model: Any) -> int:
    """Bytes of a loaded model's weights that sit on the GPU between calls (none with --offload)."""
    tensors = [
        tensor
        for component in model.pipe.components.values()
        if hasattr(component, "parameters")
        for tensor in (*component.parameters(), *component.buffers())
    ]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors if tensor.is_cuda)


class GpuPeak:
    """Peak GPU memory of one model's work inside the block: the model's weights that stay on the GPU plus
    the most it allocated, whatever other models sit on the card beside it. `bytes` stays None off CUDA."""

    def __init__(self, model: Any):
        self.model = model
        self.bytes: int | None = None
        self._others = 0

    def __enter__(self) -> GpuPeak:
        import torch

        if self.model.runtime.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._others = torch.cuda.memory_allocated() - gpu_resident_bytes(self.model)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.model.runtime.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self._others


def run_way(way: Any, items: Sequence[BenchItem], out_dir: Path) -> WayRun:
    """One pass of `way` over `items`, each item timed on its own, RSS and GPU memory (GpuPeak) watched."""
    seconds: list[float] = []
    rrd_bytes: list[int] = []
    images: list[np.ndarray] = []
    callback_total = 0.0
    cpu_started = time.process_time()
    with PeakRss() as rss, GpuPeak(way.model) as gpu:
        for bench_item in items:
            _synchronize(way.model)
            started = time.perf_counter()
            image, callback_seconds, size = way.run_item(bench_item, out_dir)
            _synchronize(way.model)
            seconds.append(time.perf_counter() - started)
            callback_total += callback_seconds
            images.append(image)
            if size is not None:
                rrd_bytes.append(size)
    cpu_seconds = time.process_time() - cpu_started
    return WayRun(way.name, seconds, cpu_seconds, callback_total, rrd_bytes, rss.peak, rss.start, gpu.bytes, images)


def interleave(
    ways: Sequence[Any], items: Sequence[BenchItem], out_dir: Path, repeats: int, log: Callable[[str], None]
) -> tuple[dict[str, WayRun], dict[str, list[WayRun]]]:
    """One warm-up pass of each way over the first item (not counted), then `repeats` passes of every way
    over all items, interleaved (a, b, c, a, b, c, ...) so drift hits all alike. Returns both."""
    warmups = {}
    for way in ways:
        warmups[way.name] = run_way(way, items[:1], out_dir)
        log(f"warm-up {way.name}: {warmups[way.name].seconds[0]:.3f} s (not counted)")
    runs: dict[str, list[WayRun]] = {way.name: [] for way in ways}
    for repeat in range(repeats):
        for way in ways:
            run = run_way(way, items, out_dir)
            runs[way.name].append(run)
            log(f"repeat {repeat + 1}/{repeats} {way.name}: {sum(run.seconds) / len(items):.3f} s/item")
    return warmups, runs


def summarize(runs: dict[str, list[WayRun]], item_count: int, reference: str = "bare") -> list[WayResult]:
    """Medians per way; ratios and output differences against the `reference` way."""
    per_item = {way: [sum(run.seconds) / item_count for run in way_runs] for way, way_runs in runs.items()}
    bare_median = statistics.median(per_item[reference])
    cpu_per_item = {way: [run.cpu_seconds / item_count for run in way_runs] for way, way_runs in runs.items()}
    bare_cpu_median = statistics.median(cpu_per_item[reference])
    bare_images = runs[reference][-1].images
    results = []
    for way, way_runs in runs.items():
        median = statistics.median(per_item[way])
        last = way_runs[-1]
        difference = max(
            int(np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).max())
            for ours, theirs in zip(last.images, bare_images, strict=True)
        )
        gpu_peaks = [run.peak_gpu_bytes for run in way_runs if run.peak_gpu_bytes is not None]
        results.append(
            WayResult(
                way=way,
                seconds_per_item=median,
                seconds_per_item_runs=per_item[way],
                ratio_vs_bare=median / bare_median,
                cpu_seconds_per_item=statistics.median(cpu_per_item[way]),
                cpu_ratio_vs_bare=statistics.median(cpu_per_item[way]) / bare_cpu_median,
                callback_seconds_per_item=statistics.median(run.callback_seconds / item_count for run in way_runs),
                rrd_bytes_per_item=statistics.fmean(last.rrd_bytes) if last.rrd_bytes else None,
                peak_rss_bytes=max(run.peak_rss_bytes for run in way_runs),
                start_rss_bytes=way_runs[0].start_rss_bytes,
                peak_gpu_bytes=max(gpu_peaks) if gpu_peaks else None,
                max_output_difference_vs_bare=None if way == reference else difference,
            )
        )
    return results


def describe_machine(model: Any) -> Machine:
    import diffusers
    import rerun
    import torch

    device = model.runtime.device
    gpu: dict[str, Any] = {}
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(torch.device(device))
        device_name = properties.name
        gpu = {
            "gpu_driver": _nvidia_driver(),
            "cuda": torch.version.cuda or "",
            "gpu_memory_bytes": properties.total_memory,
        }
    else:
        device_name = _cpu_model()
    return Machine(
        cpu=_cpu_model(),
        cpu_count=_cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        diffusers=diffusers.__version__,
        rerun_sdk=rerun.__version__,
        device=device,
        device_name=device_name,
        dtype=model.runtime.dtype_name,
        **gpu,
    )


def _nvidia_driver() -> str:
    import subprocess

    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def format_table(report: BenchReport) -> str:
    """The results as a fixed-width text table, with the machine and setup above it."""
    config, machine = report.config, report.machine
    lines = [
        f"model {config.model}, {config.size}x{config.size}, {config.steps} steps, {config.items} items, "
        f"{config.repeats} repeats (median), device {machine.device} ({machine.device_name}), {machine.dtype}",
        f"machine: {machine.cpu}, {machine.cpu_count} cores, torch {machine.torch} ({machine.torch_threads} threads), "
        f"diffusers {machine.diffusers}, rerun-sdk {machine.rerun_sdk}, {machine.platform}"
        + (f", NVIDIA driver {machine.gpu_driver}, CUDA {machine.cuda}" if machine.gpu_driver else ""),
        f"model load {report.model_load_seconds:.1f} s (not timed); input image bytes/item "
        f"{report.input_bytes_per_item:,.0f}; load average {_loads(report.load_average_start)} at start, "
        f"{_loads(report.load_average_end)} at end",
        "",
        f"{'way':<14} {'s/item':>8} {'ratio':>6} {'cpu s/item':>10} {'cpu ratio':>9} {'callback s/item':>15} "
        f"{'rrd bytes/item':>14} {'peak RSS MiB':>12} {'max |diff|':>10}",
    ]
    for result in report.results:
        rrd = f"{result.rrd_bytes_per_item:,.0f}" if result.rrd_bytes_per_item is not None else "-"
        difference = "-" if result.max_output_difference_vs_bare is None else str(result.max_output_difference_vs_bare)
        lines.append(
            f"{result.way:<14} {result.seconds_per_item:>8.3f} {result.ratio_vs_bare:>6.2f} "
            f"{result.cpu_seconds_per_item:>10.3f} {result.cpu_ratio_vs_bare:>9.2f} "
            f"{result.callback_seconds_per_item:>15.3f} {rrd:>14} {result.peak_rss_bytes / 2**20:>12,.0f} "
            f"{difference:>10}"
        )
        if result.peak_gpu_bytes is not None:
            lines[-1] += f"  (peak GPU {result.peak_gpu_bytes / 2**20:,.0f} MiB)"
    lines.append("")
    lines += [
        "s/item: wall clock, median over repeats; ratio: over bare's; cpu: CPU time of the whole process (all",
        "threads) per item; callback: time inside the per-step callback (original: VAE decode included);",
        "max |diff|: largest uint8 difference of the final images vs bare (0: the same denoising work)",
    ]
    return "\n".join(lines)


def _loads(values: Sequence[float]) -> str:
    return "/".join(f"{value:.1f}" for value in values) or "?"


def _load_average() -> list[float]:
    import os

    return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def load_bench_model(config: BenchConfig, log: Callable[[str], None]) -> tuple[Any, float]:
    """The model the benchmark measures, loaded as a batch loads it; and the seconds loading took."""
    from rr_controlnet.models.loading import load_model, resolve_runtime

    runtime = resolve_runtime(config.device, config.dtype)
    log(f"loading {config.model} on {runtime.device} ({runtime.dtype_name}) ...")
    started = time.perf_counter()
    model = load_model(bench_manifest(config).model, runtime)
    load_seconds = time.perf_counter() - started
    log(f"loaded in {load_seconds:.1f} s")
    return model, load_seconds


def measure_ways(
    config: BenchConfig, model: Any, load_seconds: float, out_dir: Path, log: Callable[[str], None]
) -> BenchReport:
    """The three ways over the config's items with a loaded model, interleaved, medians over the repeats."""
    from rr_controlnet.recording.layout import run_recording_id
    from rr_controlnet.recording.write import RecordingOptions
    from rr_controlnet.run.runner import GroupRunner

    load_start = _load_average()
    manifest = bench_manifest(config)
    recordings = out_dir / WAYS[1]
    options = RecordingOptions(**RECORDING, adherence=config.adherence)
    runner = GroupRunner(model, recordings, run_recording_id(recordings), manifest.items, options)
    try:
        items = prepare_items(runner, manifest, model.runtime.dtype_name)
        ways = [BareWay(model), RrControlnetWay(runner), OriginalWay(model)]
        _, runs = interleave(ways, items, out_dir, config.repeats, log)
    finally:
        runner.close()
    return BenchReport(
        config=config,
        machine=describe_machine(model),
        model_load_seconds=load_seconds,
        input_bytes_per_item=statistics.fmean(len(bench_item.prepared.source.encoded) for bench_item in items),
        results=summarize(runs, len(items)),
        max_rss_bytes_process=_ru_maxrss_bytes(),
        load_average_start=load_start,
        load_average_end=_load_average(),
    )


def run_benchmark(config: BenchConfig, out_dir: Path, log: Callable[[str], None]) -> BenchReport:
    import torch

    from rr_controlnet.models.loading import quiet_library_logging

    if config.threads:
        torch.set_num_threads(config.threads)
    with quiet_library_logging():  # the libraries' advisory chatter stays out of the measured output
        model, load_seconds = load_bench_model(config, log)
        return measure_ways(config, model, load_seconds, out_dir, log)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if config.out:
        out_dir = Path(config.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        report = run_benchmark(config, out_dir, log)
    else:
        with tempfile.TemporaryDirectory(prefix="rr-controlnet-bench-") as temporary:
            report = run_benchmark(config, Path(temporary), log)
    print(format_table(report))
    json_path = Path(config.json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    log(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
