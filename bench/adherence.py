"""What scoring control adherence costs per item, on outputs that look real and on maps built to be hard.

Near-copies of the bundled photos (tests/near_copies.py: shifted, blurred, re-encoded, noisy, rescaled,
recoloured, warped, pure noise) at 512, 1024 and 2048 px, scored as a batch scores them (Canny of the
output, the exact one-to-one matching against the control's edges, SSIM, the overlay); then adversarial
maps (dense grids, stripes, every pixel an edge, random dots, a checkerboard against its complement, dots
shifted by the tolerance, swapped textures, Canny of noise against Canny of other noise) at those sizes.
Seconds per item are medians over repeats; the worst case is printed with the machine's CPUs and load,
where the time goes (finding the candidate pairs against matching them) for the hard maps, and the
longest a stop asked while scoring them would wait (the longest stretch between two of scoring's checks).

With --methods, the matching alone is also timed with networkx's Hopcroft-Karp on the same graphs, side
by side (networkx comes with torch).

Usage (from the repository root)::

    python bench/adherence.py                      # 512, 1024 and 2048, 1 repeat
    python bench/adherence.py --sides 256 --repeats 3 --json /tmp/adherence.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the near-copies corpus, shared with the tests

from near_copies import KINDS, PHOTOS, adversarial_maps, canny, near_copy, square_photo  # noqa: E402

from rr_controlnet.review import edge_matching  # noqa: E402
from rr_controlnet.review.adherence import control_adherence, default_tolerance  # noqa: E402
from rr_controlnet.review.edge_matching import candidate_pairs, greedy_matching, maximum_matching  # noqa: E402

DEFAULT_JSON: Final = ROOT / "bench" / "results" / "adherence.json"


def timed(work: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median seconds, last result) of `work` over `repeats` runs."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def realistic_rows(sides: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for side in sides:
        for name in PHOTOS:
            photo = square_photo(name, side)
            control = canny(photo)
            for kind in KINDS:
                if kind == "blank":
                    continue
                output = near_copy(photo, kind)
                seconds, (scores, _) = timed(
                    lambda output=output, control=control: control_adherence(control, canny(output)), repeats
                )
                rows.append(_row("realistic", side, f"{name.removesuffix('.png')} {kind}", seconds, scores))
    return rows


class StopWatch:
    """A `should_stop` that never stops, noting when it was asked: the longest stretch between two
    questions (or the start or end of scoring) is how long a stop asked while scoring may wait."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self) -> bool:
        self.asked.append(time.perf_counter())
        return False

    def longest_wait(self, started: float, ended: float) -> float:
        moments = [started, *self.asked, ended]
        return max(later - earlier for earlier, later in itertools.pairwise(moments))


def adversarial_rows(sides: Sequence[int], repeats: int, flow_up_to: int = 0) -> list[dict[str, Any]]:
    rows = []
    for side in sides:
        for name, (control, output) in adversarial_maps(side).items():
            waits = []

            def scored(control: np.ndarray = control, output: np.ndarray = output, waits: list = waits) -> Any:
                watch, started = StopWatch(), time.perf_counter()
                result = control_adherence(control, output, watch)
                waits.append(watch.longest_wait(started, time.perf_counter()))
                return result

            seconds, (scores, _) = timed(scored, repeats)
            row = _row("adversarial", side, name, seconds, scores)
            row["longest_wait_for_stop_seconds"] = round(max(waits), 4)
            row.update(stages(control, output, flow_up_to))
            rows.append(row)
            print(f"{side} {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
    return rows


def stages(control: np.ndarray, output: np.ndarray, flow_up_to: int = 0) -> dict[str, float]:
    """Seconds spent finding the candidate pairs and matching them, once; and, up to `flow_up_to` px, growing
    the greedy matching by the maximum flow instead of the auction."""
    control_points, output_points = np.argwhere(control > 0), np.argwhere(output > 0)
    tolerance = default_tolerance(control.shape)
    pairs_seconds, pairs = timed(lambda: candidate_pairs(control_points, output_points, tolerance), 1)
    matching_seconds, partner = timed(lambda: maximum_matching(pairs), 1)
    times = {"pairs_seconds": round(pairs_seconds, 4), "matching_seconds": round(matching_seconds, 4)}
    if max(control.shape) <= flow_up_to:
        # The auction's predecessor, side by side: the greedy matching grown by a maximum flow alone.
        flow_seconds, flowed = timed(lambda: edge_matching._augmented(pairs, *greedy_matching(pairs)), 1)
        assert (flowed >= 0).sum() == (partner >= 0).sum(), "both are maximum matchings"
        times["flow_seconds"] = round(flow_seconds, 4)
    return times


def _row(kind: str, side: int, name: str, seconds: float, scores: Any) -> dict[str, Any]:
    return {
        "set": kind,
        "side": side,
        "map": name,
        "seconds": round(seconds, 4),
        "edge_pixels": max(scores.control_edges, scores.output_edges),
        "matching": scores.matching,
        "f1_tolerant": round(scores.tolerant.f1, 4),
    }


def method_rows(side: int, repeats: int) -> list[dict[str, Any]]:
    """The one-to-one matching alone, ours against networkx's Hopcroft-Karp, on the same graphs."""
    import networkx
    from networkx.algorithms import bipartite

    rows = []
    for name in PHOTOS:
        photo = square_photo(name, side)
        control = np.argwhere(canny(photo) > 0)
        for kind in ("shift", "jpeg", "rescale", "warp"):
            output = np.argwhere(canny(near_copy(photo, kind)) > 0)
            pairs = candidate_pairs(control, output, default_tolerance((side, side)))
            flow_seconds, partner = timed(lambda pairs=pairs: maximum_matching(pairs), repeats)

            def hopcroft_karp(pairs: Any = pairs) -> int:
                graph = networkx.Graph()
                count = pairs.control_count
                graph.add_nodes_from(range(count + pairs.output_count))
                graph.add_edges_from(zip(pairs.control.tolist(), (pairs.output + count).tolist(), strict=True))
                return len(bipartite.hopcroft_karp_matching(graph, top_nodes=range(count))) // 2

            hk_seconds, hk_matched = timed(hopcroft_karp, repeats)
            assert hk_matched == int((partner >= 0).sum()), "both are maximum matchings"
            rows.append({
                "side": side,
                "map": f"{name.removesuffix('.png')} {kind}",
                "pairs": len(pairs.control),
                "max_flow_seconds": round(flow_seconds, 4),
                "hopcroft_karp_seconds": round(hk_seconds, 4),
                "ratio": round(hk_seconds / flow_seconds, 1) if flow_seconds else None,
            })  # fmt: skip
    return rows


def format_tables(report: dict[str, Any]) -> str:
    machine = report["machine"]
    load = ", ".join(f"{value:.1f}" for value in machine["load_before"])
    lines = [f"adherence seconds per item ({machine['cpu_count']} CPUs, load {load} before, {machine['platform']})"]
    worst = max(report["rows"], key=lambda row: row["seconds"])
    lines += [f"worst case: {worst['seconds']:.2f} s, {worst['side']} px {worst['map']} ({worst['set']})"]
    waits = [row for row in report["rows"] if "longest_wait_for_stop_seconds" in row]
    if waits:
        longest = max(waits, key=lambda row: row["longest_wait_for_stop_seconds"])
        lines.append(
            f"a stop asked while scoring waits at most {longest['longest_wait_for_stop_seconds']:.2f} s "
            f"({longest['side']} px {longest['map']})"
        )
    lines.append("")
    lines += [
        "| set | side | median s | max s | slowest map |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for kind in ("realistic", "adversarial"):
        for side in report["sides"]:
            rows = [row for row in report["rows"] if row["set"] == kind and row["side"] == side]
            slowest = max(rows, key=lambda row: row["seconds"])
            median = statistics.median(row["seconds"] for row in rows)
            cells = [kind, side, f"{median:.3f}", f"{slowest['seconds']:.3f}", slowest["map"]]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "| side | map | edge pixels | tolerant F1 | s | stop waits s | pairs s | matching s | by flow s |"]
    lines += ["| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [
        f"| {row['side']} | {row['map']} | {row['edge_pixels']:,} | {row['f1_tolerant']:.3f} | {row['seconds']:.3f} | "
        f"{row['longest_wait_for_stop_seconds']:.3f} | {row['pairs_seconds']:.3f} | {row['matching_seconds']:.3f} | "
        + (f"{row['flow_seconds']:.3f} |" if "flow_seconds" in row else "- |")
        for row in report["rows"]
        if row["set"] == "adversarial"
    ]
    if report.get("methods"):
        lines += ["", "| side | near-copy | candidate pairs | ours s | Hopcroft-Karp (networkx) s | ratio |"]
        lines += ["| ---: | --- | ---: | ---: | ---: | ---: |"]
        lines += [
            f"| {row['side']} | {row['map']} | {row['pairs']:,} | {row['max_flow_seconds']:.4f} | "
            f"{row['hopcroft_karp_seconds']:.4f} | {row['ratio']}x |"
            for row in report["methods"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", action="store_true", help="also time networkx's Hopcroft-Karp on the same graphs")
    parser.add_argument(
        "--flow-up-to", type=int, default=1024, help="also grow adversarial maps up to this side by the maximum flow"
    )
    parser.add_argument("--json", dest="json_path", default=str(DEFAULT_JSON))
    args = parser.parse_args(argv)
    warm_up = square_photo(PHOTOS[0], 64)
    control_adherence(canny(warm_up), canny(near_copy(warm_up, "shift")))  # imports SciPy and scikit-image
    report = {
        "machine": {
            "cpu_count": len(os.sched_getaffinity(0)),
            "load_before": os.getloadavg(),
            "platform": platform.platform(),
        },
        "sides": args.sides,
        "rows": realistic_rows(args.sides, args.repeats) + adversarial_rows(args.sides, args.repeats, args.flow_up_to),
        "methods": method_rows(args.sides[0], args.repeats) if args.methods else [],
    }
    report["machine"]["load_after"] = os.getloadavg()
    Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    print(format_tables(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
