"""What control units cost in memory: random-sd15 (the SD1.5 architecture, random weights) with 1, 2 and 3
units, each count in a process of its own: the parameters of every ControlNet loaded, and the resident
memory after loading and at its peak over two items generated (one denoising step at 64x64 each, so that
activations stay small and the weights dominate). The second item reuses the first's ControlNets: the
figures show one copy per process.

Usage (from the repository root)::

    python bench/units.py                          # 1, 2 and 3 units in fp32: about 10 GB at most
    python bench/units.py --dtype fp16 --counts 1 3 --json /tmp/units.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import numpy as np

ROOT: Final = Path(__file__).resolve().parent.parent
UNIT_TYPES: Final = ("canny", "depth", "pose")
SIDE: Final = 64


def peak_rss_mib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure(count: int, dtype: str) -> dict[str, Any]:
    """Load random-sd15 and `count` units' ControlNets, generate two items, and say what it held."""
    from rr_controlnet.control_maps import UnitMap
    from rr_controlnet.generation.generate import GenerationJob, generate
    from rr_controlnet.images import ControlImages
    from rr_controlnet.models.control_models import UnitControlNets
    from rr_controlnet.models.loading import LoadRequest, Runtime, load_batch_models
    from rr_controlnet.models.presets import model_spec_from_preset
    from rr_controlnet.spec import ControlUnit, GenerationParams

    before = current_rss_mib()
    model, _ = load_batch_models(LoadRequest(model_spec_from_preset("random-sd15"), Runtime("cpu", dtype)))
    units = tuple(
        ControlUnit(kind, None if kind == "canny" else Path(f"{kind}.png"), None, 0.5, 0.0, 1.0)
        for kind in UNIT_TYPES[:count]
    )
    controlnets = UnitControlNets(model)
    pipe = controlnets.pipeline(units)
    loaded = current_rss_mib()
    params = GenerationParams("a horse", "", 0, 1, 7.5, 0.5, 0.0, 1.0, 100, 200, SIDE, SIDE, "crop")
    maps = tuple(UnitMap(unit, np.full((SIDE, SIDE, 3), 128, np.uint8)) for unit in units)
    control = ControlImages(np.zeros((SIDE, SIDE, 3), np.uint8), np.zeros((SIDE, SIDE), np.uint8))
    for seed in (1, 2):
        job = GenerationJob(f"item{seed}", params, control, maps)
        generate(model, [job], preview_mode="none", pipe=controlnets.pipeline(units))
    assert controlnets.pipeline(units) is pipe
    return {
        "units": count,
        "dtype": dtype,
        "controlnets_loaded": len(controlnets.controlnets),
        "controlnet_parameters_m": round(controlnets.parameters() / 1e6, 1),
        "unet_parameters_m": round(sum(p.numel() for p in model.pipe.unet.parameters()) / 1e6, 1),
        "rss_loaded_mib": round(loaded - before),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| units | ControlNets loaded | their parameters | UNet parameters | resident after loading | peak resident |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['units']} | {row['controlnets_loaded']} | {row['controlnet_parameters_m']} M "
            f"| {row['unet_parameters_m']} M | {row['rss_loaded_mib']:,} MiB | {row['peak_rss_mib']:,} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a count, measured in this process
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.dtype)))
        return
    rows = []
    for count in args.counts:
        command = [sys.executable, __file__, "--one", str(count), "--dtype", args.dtype]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"random-sd15, {args.dtype}, CPU ({platform.processor() or platform.machine()}), {SIDE}x{SIDE}, 1 step")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
