"""The GPU path in one run: every figure the CUDA path owes, from one command, as JSON and a markdown table.

Sections, in this order (each writes its figures to the JSON and the table as soon as it is done, so a run
cut short keeps what it measured; the slowest and least certain, compile, comes last):

- ``ways-sd15``: random-sd15, 512x512, 20 steps: the bare pipeline, rr-controlnet and the original
  example's way (bench/benchmark.py's three ways): seconds per image, images per second, peak GPU memory,
  .rrd MB per item;
- ``batch``: ``--batch-size 1`` vs 4 over 8 items: images per second (goal: B=4 at least 1.5x B=1);
- ``preview``: ``--preview taesd`` and ``vae`` vs ``x0``: seconds per step they add;
- ``offload``: ``--offload`` vs resident: peak GPU memory and seconds per item;
- ``ways-sdxl``: random-sdxl, 1024x1024, 30 steps: the three ways again;
- ``compile``: ``--compile`` vs not, both freshly loaded: seconds of the first item after loading, and
  steady seconds per item;
- ``flux`` and ``sd3`` (only when asked for: ``--sections all`` or by name): random-flux (FLUX.1-dev with
  InstantX's Canny ControlNet) and random-sd3 (SD3.5 Large with its Canny ControlNet) at full size in bf16,
  their weights drawn on the GPU, 1024x1024, a few steps with the ControlNet: build seconds, seconds per item
  and per step, peak GPU memory, resident and with ``--offload``.

Within a section the ways run interleaved (a, b, a, b, ...) after one warm-up item each, and figures are
medians over the repeats, as in bench/benchmark.py, whose ways, runner and timing this calls. Items are
generated and recorded by the batch's own runner (GroupRunner), models loaded by its loader. Peak GPU
memory is a model's own (bench/benchmark.py GpuPeak), so models loaded side by side do not blur it.

Usage (from the repository root; bench/gpu_run.sh runs the CUDA tests first, then this)::

    python bench/gpu_suite.py --device cuda     # about 5 min on one H100; writes bench/results/gpu/
    python bench/gpu_suite.py --device cuda --sections flux,sd3   # about 3 min: the full-size transformers
    python bench/gpu_suite.py --device cuda --sections all        # everything: about 8 to 9 min
    python bench/gpu_suite.py --device cpu      # tiny presets, 64x64, seconds; writes bench/results/gpu-suite-cpu/

The CPU mode runs every section on the tiny presets (a few steps at 64x64) to prove each one produces its
figures (``flux`` and ``sd3`` build tiny-flux's and tiny-sd3's configs the way the full-size ones are built);
``--compile`` and ``--offload`` need CUDA, so there both sides of those sections run the plain resident
model, marked as a stand-in. Writes ``gpu-suite-<device name>.json`` and ``.md`` under ``--out``:
bench/results/gpu/ is tracked by git (commit a GPU run's figures there), the rest of bench/results/ is not.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmark.py beside this file, however it is run

from benchmark import (
    RECORDING,
    BenchConfig,
    GpuPeak,
    RrControlnetWay,
    bench_manifest,
    describe_machine,
    interleave,
    measure_ways,
    prepare_items,
    summarize,
)

RESULTS: Final = Path(__file__).resolve().parent / "results"
SECTIONS: Final = ("ways-sd15", "batch", "preview", "offload", "ways-sdxl", "compile", "flux", "sd3")
# What runs unless --sections says otherwise: the full-size transformer families take as long again.
DEFAULT_SECTIONS: Final = SECTIONS[:6]
FAMILY_SECTIONS: Final = ("flux", "sd3")
# The models each section uses. Before a section the others are freed: SDXL gets the card to itself, and
# the compile section's plain model is freshly loaded, so that its first item is a first one too.
SECTION_ROLES: Final = {
    "ways-sd15": ("sd15",),
    "batch": ("sd15",),
    "preview": ("sd15",),
    "offload": ("sd15", "sd15-offload"),
    "ways-sdxl": ("sdxl",),
    "compile": ("sd15-plain", "sd15-compiled"),
    "flux": (),  # each family section loads its models one at a time, the card to each alone
    "sd3": (),
}
BATCH_SPEEDUP_GOAL: Final = 1.5  # images per second at the larger batch size over batch size 1, at 512
MIB: Final = 2**20
MB: Final = 1e6


@dataclass(frozen=True)
class Workload:
    model: str
    size: int
    steps: int


@dataclass(frozen=True)
class SuiteConfig:
    device: str
    dtype: str
    sd15: Workload
    sdxl: Workload
    items: int  # per section, except batch and ways-sdxl
    repeats: int
    sdxl_items: int  # SDXL at 1024 costs several times SD1.5 at 512: fewer items keep the run short
    sdxl_repeats: int
    batch_items: int
    batch_size: int
    threads: int  # torch CPU threads; 0 leaves torch's choice
    flux: Workload
    sd3: Workload
    family_dtype: str  # the full-size transformers run in bf16, as their makers publish them
    family_items: int
    family_repeats: int
    adherence: bool = True  # score each output's edges, as a batch does (scikit-image and SciPy)
    sections: tuple[str, ...] = DEFAULT_SECTIONS


CUDA_CONFIG: Final = SuiteConfig(
    device="cuda",
    dtype="fp16",
    sd15=Workload("random-sd15", 512, 20),
    sdxl=Workload("random-sdxl", 1024, 30),
    items=2,
    repeats=3,
    sdxl_items=1,
    sdxl_repeats=3,
    batch_items=8,
    batch_size=4,
    threads=0,
    flux=Workload("random-flux", 1024, 4),
    sd3=Workload("random-sd3", 1024, 4),
    family_dtype="bf16",
    family_items=1,
    family_repeats=2,
)
# Every section on the tiny presets, for the default test suite: seconds on a shared 2-core CPU.
CPU_CONFIG: Final = SuiteConfig(
    device="cpu",
    dtype="fp32",
    sd15=Workload("tiny-sd15", 64, 2),
    sdxl=Workload("tiny-sdxl", 64, 2),
    items=1,
    repeats=1,
    sdxl_items=1,
    sdxl_repeats=1,
    batch_items=4,
    batch_size=2,
    threads=1,
    flux=Workload("tiny-flux", 64, 2),
    sd3=Workload("tiny-sd3", 64, 2),
    family_dtype="fp32",
    family_items=1,
    family_repeats=1,
)


@dataclass
class Section:
    name: str
    title: str
    rows: list[dict[str, Any]]
    figures: dict[str, Any]  # the section's headline numbers
    notes: list[str]
    seconds: float = 0.0


class Models:
    """Loaded models by role, each loaded when first asked for (as a batch loads it) and freed on request."""

    ROLES: Final = {
        "sd15": ("sd15", {}),
        "sd15-plain": ("sd15", {}),
        "sd15-compiled": ("sd15", {"compile_models": True}),
        "sd15-offload": ("sd15", {"offload": True}),
        "sdxl": ("sdxl", {}),
        "flux": ("flux", {}),
        "flux-offload": ("flux", {"offload": True}),
        "sd3": ("sd3", {}),
        "sd3-offload": ("sd3", {"offload": True}),
    }

    def __init__(self, config: SuiteConfig, log: Callable[[str], None]):
        self.config = config
        self.log = log
        self.loaded: dict[str, Any] = {}
        self.load_seconds: dict[str, float] = {}

    @property
    def cuda(self) -> bool:
        return self.config.device.startswith("cuda")

    def workload(self, role: str) -> Workload:
        return getattr(self.config, self.ROLES[role][0])

    def family(self, role: str) -> bool:
        """Whether `role` is one of the full-size transformer families (flux, sd3)."""
        return self.ROLES[role][0] in FAMILY_SECTIONS

    def dtype(self, role: str) -> str:
        return self.config.family_dtype if self.family(role) else self.config.dtype

    def get(self, role: str) -> Any:
        if role not in self.loaded:
            from rr_controlnet.models.loading import load_model, resolve_runtime

            flags = self.ROLES[role][1] if self.cuda else {}  # --compile and --offload need CUDA
            runtime = resolve_runtime(self.config.device, self.dtype(role))
            spec = bench_manifest(self.bench_config(role)).model
            self.log(f"loading {spec.name} ({role}) on {runtime.device}, {runtime.dtype_name} ...")
            started = time.perf_counter()
            if self.family(role) and not self.cuda:
                self.loaded[role] = built_here(spec, runtime)
            else:
                self.loaded[role] = load_model(spec, runtime, **flags)
            self.load_seconds[role] = time.perf_counter() - started
            self.log(f"loaded in {self.load_seconds[role]:.1f} s")
        return self.loaded[role]

    def keep_only(self, roles: Sequence[str]) -> None:
        self.free(*(role for role in list(self.loaded) if role not in roles))

    def free(self, *roles: str) -> None:
        for role in roles:
            self.loaded.pop(role, None)
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()

    def bench_config(self, role: str, items: int | None = None, repeats: int | None = None) -> BenchConfig:
        workload, config = self.workload(role), self.config
        default_items = config.family_items if self.family(role) else config.items
        return BenchConfig(
            model=workload.model,
            size=workload.size,
            steps=workload.steps,
            items=items or default_items,
            repeats=repeats or config.repeats,
            device=config.device,
            dtype=self.dtype(role),
            threads=config.threads,
            out=None,
            json_path="",
            adherence=config.adherence,
        )


class Suite:
    """What every section needs: the models, a scratch folder for recordings, the log."""

    def __init__(self, config: SuiteConfig, scratch: Path, log: Callable[[str], None]):
        self.config = config
        self.models = Models(config, log)
        self.scratch = scratch
        self.log = log
        self._runners = ExitStack()

    def runner(
        self,
        model: Any,
        name: str,
        role: str,
        items: int | None = None,
        preview: str = RECORDING["preview"],
        preview_decoder: Any = None,
    ) -> Any:
        """The batch's runner for `model`, recording as a batch does into a folder of its own; closed when
        the section is done."""
        from rr_controlnet.recording.layout import run_recording_id
        from rr_controlnet.recording.write import RecordingOptions
        from rr_controlnet.run.runner import GroupRunner

        folder = self.scratch / _slug(name)
        items_laid_out = bench_manifest(self.models.bench_config(role, items=items)).items
        options = RecordingOptions(**{**RECORDING, "preview": preview}, adherence=self.config.adherence)
        runner = GroupRunner(
            model, folder, run_recording_id(folder), items_laid_out, options, preview_decoder=preview_decoder
        )
        self._runners.callback(runner.close)
        return runner

    def rr_way(self, model: Any, name: str, role: str, **recording: Any) -> RrControlnetWay:
        """An rr-controlnet way (the batch's runner, batch size 1) under its own name and folder; `recording`:
        the runner's preview and preview_decoder."""
        return RrControlnetWay(self.runner(model, name, role, **recording), name)

    def items(self, way: RrControlnetWay, role: str) -> list[Any]:
        return prepare_items(way.runner, bench_manifest(self.models.bench_config(role)), self.models.dtype(role))

    def close_runners(self) -> None:
        """Close the runners a section made: their recording streams, and their hold on its models."""
        self._runners.close()
        self._runners = ExitStack()


def built_here(spec: Any, runtime: Any) -> Any:
    """tiny-flux or tiny-sd3 made the way load_model makes random-flux and random-sd3: every component drawn
    straight on the runtime's device (large_models.build_on_device). The CPU mode's stand-in for them."""
    from rr_controlnet.models.large_models import build_on_device
    from rr_controlnet.models.loading import LoadedModel
    from rr_controlnet.models.presets import native_size

    pipe = build_on_device(spec.name, runtime.device, runtime.torch_dtype)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(spec=spec, pipe=pipe, runtime=runtime, native_size=native_size(spec))


def stand_in_note(flag: str, config: SuiteConfig) -> list[str]:
    if config.device.startswith("cuda"):
        return []
    return [f"stand-in: {flag} needs CUDA; on {config.device} both sides run the resident model, uncompiled"]


# --- sections ------------------------------------------------------------------------------------------


def compile_section(suite: Suite) -> Section:
    """First item after loading, and steady seconds per item, compiled vs not, both freshly loaded."""
    config, models = suite.config, suite.models
    ways = [
        suite.rr_way(models.get("sd15-plain"), "not compiled", "sd15"),
        suite.rr_way(models.get("sd15-compiled"), "compiled", "sd15"),
    ]
    warmups, runs = interleave(ways, suite.items(ways[0], "sd15"), suite.scratch, config.repeats, suite.log)
    results = summarize(runs, config.items, reference="not compiled")
    rows = [
        {
            "way": result.way,
            "first_item_seconds": warmups[result.way].seconds[0],
            "seconds_per_item": result.seconds_per_item,
            "ratio": result.ratio_vs_bare,
            "max_difference": result.max_output_difference_vs_bare,
        }
        for result in results
    ]
    figures = {
        "first_item_seconds_added": rows[1]["first_item_seconds"] - rows[0]["first_item_seconds"],
        "steady_speedup": rows[0]["seconds_per_item"] / rows[1]["seconds_per_item"],
    }
    workload = config.sd15
    title = f"--compile: {_describe(workload, config)}, {config.items} items"
    return Section("compile", title, rows, figures, stand_in_note("--compile", config))


def ways_section(suite: Suite, role: str) -> Section:
    """The bare pipeline, rr-controlnet and the original example's way: bench/benchmark.py's measure_ways."""
    config, models = suite.config, suite.models
    items, repeats = (config.sdxl_items, config.sdxl_repeats) if role == "sdxl" else (config.items, config.repeats)
    bench_config = models.bench_config(role, items=items, repeats=repeats)
    bench = measure_ways(bench_config, models.get(role), models.load_seconds[role], suite.scratch / role, suite.log)
    rows = [
        {
            "way": result.way,
            "seconds_per_image": result.seconds_per_item,
            "images_per_second": 1 / result.seconds_per_item,
            "ratio": result.ratio_vs_bare,
            "peak_gpu_mib": _mib(result.peak_gpu_bytes),
            "rrd_mb_per_item": None if result.rrd_bytes_per_item is None else result.rrd_bytes_per_item / MB,
            "max_difference": result.max_output_difference_vs_bare,
        }
        for result in bench.results
    ]
    by_way = {row["way"]: row for row in rows}
    figures = {
        "model_load_seconds": bench.model_load_seconds,
        "rr_controlnet_vs_bare": by_way["rr-controlnet"]["ratio"],
        "original_vs_bare": by_way["original"]["ratio"],
    }
    title = f"Three ways: {_describe(models.workload(role), config)}, {items} items, {repeats} repeats"
    return Section(f"ways-{role}", title, rows, figures, [])


def batch_section(suite: Suite) -> Section:
    """Images per second at batch size 1 and at config.batch_size, over config.batch_items items."""
    from rr_controlnet.outputs import ItemOutcome
    from rr_controlnet.run.plan import plan_items

    config, models = suite.config, suite.models
    model = models.get("sd15")
    runner = suite.runner(model, "batch", "sd15", items=config.batch_items)
    manifest = bench_manifest(models.bench_config("sd15", items=config.batch_items))
    planned = plan_items(manifest, config.dtype, recording=RECORDING)
    sizes = (1, config.batch_size)
    groups = {size: list(runner.prepared_groups(planned, size)) for size in sizes}  # prepared before timing
    unprepared = [group for size in sizes for group in groups[size] if isinstance(group, ItemOutcome)]
    if unprepared:
        raise RuntimeError(f"items could not be prepared: {unprepared}")
    for size in sizes:  # warm-up: the first group of each size, not counted
        _run_groups(runner, groups[size][:1])
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    peaks: dict[int, list[int]] = {size: [] for size in sizes}
    for repeat in range(config.repeats):
        for size in sizes:
            with GpuPeak(model) as gpu:  # which waits for the GPU on leaving
                started = time.perf_counter()
                _run_groups(runner, groups[size])
            seconds[size].append(time.perf_counter() - started)
            if gpu.bytes is not None:
                peaks[size].append(gpu.bytes)
            suite.log(f"repeat {repeat + 1}/{config.repeats} batch size {size}: {seconds[size][-1]:.3f} s")
    rows = []
    for size in sizes:
        median = statistics.median(seconds[size])
        rows.append(
            {
                "batch_size": size,
                "seconds": median,
                "images_per_second": config.batch_items / median,
                "peak_gpu_mib": _mib(max(peaks[size])) if peaks[size] else None,
            }
        )
    speedup = rows[1]["images_per_second"] / rows[0]["images_per_second"]
    goal_met = speedup >= BATCH_SPEEDUP_GOAL if models.cuda else None  # the goal is the GPU's
    figures = {"speedup": speedup, "goal": BATCH_SPEEDUP_GOAL, "goal_met": goal_met}
    title = f"--batch-size 1 vs {config.batch_size}: {_describe(config.sd15, config)}, {config.batch_items} items"
    notes = [f"goal: batch size {config.batch_size} at least {BATCH_SPEEDUP_GOAL}x the images per second of 1"]
    return Section("batch", title, rows, figures, notes)


def preview_section(suite: Suite) -> Section:
    """Seconds per step that --preview taesd and vae add over the default x0 preview."""
    from rr_controlnet.models.loading import load_preview_decoder

    config, models = suite.config, suite.models
    model = models.get("sd15")
    decoder = load_preview_decoder(model.spec, model.runtime)
    ways = [
        suite.rr_way(model, "x0", "sd15"),
        suite.rr_way(model, "taesd", "sd15", preview="taesd", preview_decoder=decoder),
        suite.rr_way(model, "vae", "sd15", preview="vae"),
    ]
    _, runs = interleave(ways, suite.items(ways[0], "sd15"), suite.scratch, config.repeats, suite.log)
    results = summarize(runs, config.items, reference="x0")
    x0_seconds = results[0].seconds_per_item
    rows = [
        {
            "preview": result.way,
            "seconds_per_item": result.seconds_per_item,
            "seconds_per_step_added": (result.seconds_per_item - x0_seconds) / config.sd15.steps,
            "rrd_mb_per_item": (result.rrd_bytes_per_item or 0) / MB,
            "max_difference": result.max_output_difference_vs_bare,
        }
        for result in results
    ]
    figures = {f"{row['preview']}_ms_per_step_added": row["seconds_per_step_added"] * 1e3 for row in rows[1:]}
    title = f"--preview taesd and vae vs x0: {_describe(config.sd15, config)}, {config.items} items"
    return Section("preview", title, rows, figures, [])


def offload_section(suite: Suite) -> Section:
    """Peak GPU memory and seconds per item with --offload vs every model resident."""
    config, models = suite.config, suite.models
    ways = [
        suite.rr_way(models.get("sd15"), "resident", "sd15"),
        suite.rr_way(models.get("sd15-offload"), "offload", "sd15"),
    ]
    _, runs = interleave(ways, suite.items(ways[0], "sd15"), suite.scratch, config.repeats, suite.log)
    results = summarize(runs, config.items, reference="resident")
    rows = [
        {
            "way": result.way,
            "seconds_per_item": result.seconds_per_item,
            "ratio": result.ratio_vs_bare,
            "peak_gpu_mib": _mib(result.peak_gpu_bytes),
            "max_difference": result.max_output_difference_vs_bare,
        }
        for result in results
    ]
    figures: dict[str, Any] = {"seconds_ratio": rows[1]["ratio"]}
    if rows[0]["peak_gpu_mib"] and rows[1]["peak_gpu_mib"] is not None:
        figures["peak_gpu_ratio"] = rows[1]["peak_gpu_mib"] / rows[0]["peak_gpu_mib"]
    title = f"--offload vs resident: {_describe(config.sd15, config)}, {config.items} items"
    return Section("offload", title, rows, figures, stand_in_note("--offload", config))


def family_section(suite: Suite, family: str) -> Section:
    """A full-size transformer family with its ControlNet at 1024: resident, then with --offload, each loaded
    alone (the card to itself): seconds to build, first item, steady seconds per item and per step, peak GPU."""
    config, models = suite.config, suite.models
    workload = models.workload(family)
    resident = _family_row(suite, "resident", family)
    offload = _family_row(suite, "offload", f"{family}-offload")
    rows = [resident, offload]
    figures: dict[str, Any] = {"offload_seconds_ratio": offload["seconds_per_item"] / resident["seconds_per_item"]}
    if resident["peak_gpu_mib"] and offload["peak_gpu_mib"] is not None:
        figures["offload_peak_gpu_ratio"] = offload["peak_gpu_mib"] / resident["peak_gpu_mib"]
    title = (
        f"{workload.model} with its ControlNet: {workload.size}x{workload.size}, {workload.steps} steps, "
        f"{config.family_dtype}, {config.family_items} item, {config.family_repeats} repeats, resident vs --offload"
    )
    notes = ["s/step: an item's seconds over its steps (text encoding, VAE decoding and recording included)"]
    notes += stand_in_note("--offload", config)
    if not models.cuda:
        notes.append(f"stand-in: on {config.device} {workload.model}'s small configs, built as the full-size ones are")
    return Section(family, title, rows, figures, notes)


def _family_row(suite: Suite, way_name: str, role: str) -> dict[str, Any]:
    """One variant of a family measured with the card to itself: every other model freed first (a function of
    its own, so that nothing here holds the resident model's 37 GB while the offloaded one is built)."""
    config, models = suite.config, suite.models
    models.keep_only(())
    way = suite.rr_way(models.get(role), way_name, role)
    warmups, runs = interleave([way], suite.items(way, role), suite.scratch, config.family_repeats, suite.log)
    (result,) = summarize(runs, config.family_items, reference=way_name)
    suite.close_runners()
    return {
        "way": way_name,
        "load_seconds": models.load_seconds[role],
        "first_item_seconds": warmups[way_name].seconds[0],
        "seconds_per_item": result.seconds_per_item,
        "seconds_per_step": result.seconds_per_item / models.workload(role).steps,
        "peak_gpu_mib": _mib(result.peak_gpu_bytes),
    }


SECTION_RUNS: Final[dict[str, Callable[[Suite], Section]]] = {
    "compile": compile_section,
    "ways-sd15": lambda suite: ways_section(suite, "sd15"),
    "batch": batch_section,
    "preview": preview_section,
    "offload": offload_section,
    "ways-sdxl": lambda suite: ways_section(suite, "sdxl"),
    "flux": lambda suite: family_section(suite, "flux"),
    "sd3": lambda suite: family_section(suite, "sd3"),
}


def _run_groups(runner: Any, groups: Sequence[Any]) -> None:
    for group in groups:
        failed = [outcome for outcome in runner.run_group(group) if outcome.status != "done"]
        if failed:
            raise RuntimeError(f"item {failed[0].id!r}: {failed[0].error}")


def _describe(workload: Workload, config: SuiteConfig) -> str:
    return f"{workload.model} {workload.size}x{workload.size}, {workload.steps} steps, {config.dtype}"


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# --- the report ----------------------------------------------------------------------------------------

COLUMNS: Final = {  # key: (header, format)
    "way": ("way", "{}"),
    "preview": ("preview", "{}"),
    "batch_size": ("batch size", "{}"),
    "seconds_per_image": ("s/image", "{:.3f}"),
    "images_per_second": ("images/s", "{:.2f}"),
    "seconds": ("s (all items)", "{:.2f}"),
    "load_seconds": ("load s", "{:.1f}"),
    "first_item_seconds": ("first item s", "{:.2f}"),
    "seconds_per_item": ("s/item", "{:.3f}"),
    "seconds_per_step": ("s/step", "{:.3f}"),
    "seconds_per_step_added": ("s/step added", "{:+.4f}"),
    "ratio": ("ratio", "{:.2f}"),
    "peak_gpu_mib": ("peak GPU MiB", "{:,.0f}"),
    "rrd_mb_per_item": (".rrd MB/item", "{:.2f}"),
    "max_difference": ("max diff", "{}"),
}


def markdown_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Rows of figures as a markdown table, columns in COLUMNS' order; '-' where a figure does not apply."""
    keys = [key for key in COLUMNS if any(key in row for row in rows)]
    lines = ["| " + " | ".join(COLUMNS[key][0] for key in keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        cells = ["-" if row.get(key) is None else COLUMNS[key][1].format(row[key]) for key in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    machine, suite = report["machine"], report["suite"]
    card = machine["device_name"]
    lines = [
        f"# GPU suite: {card}",
        "",
        "| card | memory | driver | CUDA | torch | diffusers | rerun-sdk | python | CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {card} | {_gib(machine.get('gpu_memory_bytes'))} | {machine.get('gpu_driver') or '-'} "
        f"| {machine.get('cuda') or '-'} | {machine['torch']} | {machine['diffusers']} | {machine['rerun_sdk']} "
        f"| {machine['python']} | {machine['cpu']} ({machine['cpu_count']} cores) |",
        "",
        f"{suite['started']}, device {suite['device']}, {suite['dtype']}, {suite['seconds']:.0f} s in all; control "
        f"adherence scored per item: {'yes' if suite['adherence'] else 'no (--no-adherence)'}. Medians over "
        "interleaved repeats after one warm-up item per way; ratio: over the section's first row; max diff: "
        "largest uint8 difference of the outputs from the first row's.",
    ]
    for section in report["sections"]:
        lines += ["", f"## {section['title']}", "", *markdown_table(section["rows"]), ""]
        figures = ", ".join(f"{key} {_figure(value)}" for key, value in section["figures"].items())
        lines.append(f"{figures}; {section['seconds']:.0f} s.")
        lines += [f"- {note}" for note in section["notes"]]
    for name, error in report["failed_sections"].items():
        lines += ["", f"## {name}: failed", "", f"    {error}"]
    return "\n".join(lines) + "\n"


def _figure(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.0f} GiB"


def output_stem(device_name: str) -> str:
    return f"gpu-suite-{_slug(device_name)}"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(report["machine"]["device_name"])
    json_path, markdown_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_path.write_text(report_markdown(report))
    return json_path, markdown_path


# --- running it ----------------------------------------------------------------------------------------


def run_suite(config: SuiteConfig, out_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every section of config.sections, in SECTIONS' order; the report rewritten after each. A failing
    section is reported and the rest still run."""
    import torch

    from rr_controlnet.models.loading import quiet_library_logging

    threads = torch.get_num_threads()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        with quiet_library_logging():
            return _run_sections(config, out_dir, log)
    finally:
        torch.set_num_threads(threads)


def _run_sections(config: SuiteConfig, out_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {
        "suite": {
            **asdict(config),
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": 0.0,
        },
        "machine": None,
        "sections": [],
        "failed_sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="rr-controlnet-suite-") as scratch:
        suite = Suite(config, Path(scratch), log)
        try:
            for name in (name for name in SECTIONS if name in config.sections):
                suite.models.keep_only(SECTION_ROLES[name])
                log(f"== {name}")
                section_started = time.perf_counter()
                try:
                    section = SECTION_RUNS[name](suite)
                except Exception as exc:  # a failing section is a finding; the others still run
                    report["failed_sections"][name] = f"{type(exc).__name__}: {exc}"
                    log(f"section {name} failed: {report['failed_sections'][name]}")
                    suite.close_runners()
                    suite.models.free(*Models.ROLES)
                else:
                    suite.close_runners()
                    section.seconds = time.perf_counter() - section_started
                    report["sections"].append(asdict(section))
                    if report["machine"] is None:
                        report["machine"] = asdict(describe_machine(next(iter(suite.models.loaded.values()))))
                report["suite"]["seconds"] = time.perf_counter() - started
                if report["machine"] is not None:
                    write_report(report, out_dir)
        finally:
            suite.close_runners()
            suite.models.free(*Models.ROLES)
    return report


def parse_args(argv: Sequence[str] | None = None) -> tuple[SuiteConfig, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cuda: the full suite; cpu: tiny")
    parser.add_argument(
        "--out",
        help="folder for the JSON and markdown (default: bench/results/gpu, where GPU figures are committed; "
        "for --device cpu, bench/results/gpu-suite-cpu, scratch)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated, run in this order: {','.join(SECTIONS)}; 'all' for every one (default: all but "
        f"{' and '.join(FAMILY_SECTIONS)}, the full-size transformers)",
    )
    parser.add_argument(
        "--no-adherence",
        dest="adherence",
        action="store_false",
        help="skip the edge scores per item (for machines without scikit-image and SciPy)",
    )
    args = parser.parse_args(argv)
    sections = tuple(name.strip() for name in args.sections.split(",") if name.strip())
    if sections == ("all",):
        sections = SECTIONS
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}: choose from {', '.join(SECTIONS)}")
    base = CUDA_CONFIG if args.device == "cuda" else CPU_CONFIG
    out = args.out or RESULTS / ("gpu" if args.device == "cuda" else "gpu-suite-cpu")
    return replace(base, adherence=args.adherence, sections=sections), Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    config, out_dir = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run_suite(config, out_dir, log)
    if report["machine"] is None:
        log("no section completed: nothing written")
        return 1
    json_path, markdown_path = write_report(report, out_dir)
    print(markdown_path.read_text())
    log(f"wrote {json_path} and {markdown_path}")
    return 1 if report["failed_sections"] else 0


if __name__ == "__main__":
    sys.exit(main())
