"""What scoring control adherence costs per item, on outputs that look real and on maps built to be hard.

Near-copies of the bundled photos (tests/near_copies.py: shifted, blurred, re-encoded, noisy, rescaled,
recoloured, warped, pure noise) at 512 and 1024 px, scored as a batch scores them (Canny of the output,
matching against the control's edges, SSIM, the overlay); then adversarial maps (dense grids, stripes,
every pixel an edge, random dots) at those sizes, and random dots and grids sized to the exact-matching
budget, the slowest maps that are still matched one to one. Seconds per item are medians over repeats.

With --methods, the one-to-one matching alone is also timed with networkx's Hopcroft-Karp on the same
graphs, side by side (networkx comes with torch): why the matching is a maximum flow.

Usage (from the repository root)::

    python bench/adherence.py                      # 512 and 1024, 3 repeats: a few minutes on 2 cores
    python bench/adherence.py --sides 256 --repeats 1 --json /tmp/adherence.json
"""

from __future__ import annotations

import argparse
import json
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

from rr_controlnet.review.adherence import EXACT_MATCH_BUDGET, candidate_pairs, control_adherence, maximum_matching  # noqa: E402

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


def at_budget(side: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random dots and a dense grid with about EXACT_MATCH_BUDGET edge pixels on a side x side map."""
    rng = np.random.default_rng(2)
    density = EXACT_MATCH_BUDGET / side**2 * 0.98
    ys, xs = np.mgrid[0:side, 0:side]
    spacing = max(2, round(2 * side**2 / EXACT_MATCH_BUDGET))
    grid = (xs % spacing == 0) | (ys % spacing == 0)
    maps = {
        "random dots at the budget": (rng.random((side, side)) < density, rng.random((side, side)) < density),
        "grid at the budget": (grid, np.roll(grid, (1, 1), axis=(0, 1))),
    }
    return {
        name: (control.astype(np.uint8) * 255, output.astype(np.uint8) * 255)
        for name, (control, output) in maps.items()
    }


def adversarial_rows(sides: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for side in sides:
        for name, (control, output) in {**adversarial_maps(side), **at_budget(side)}.items():
            seconds, (scores, _) = timed(
                lambda control=control, output=output: control_adherence(control, output), repeats
            )
            rows.append(_row("adversarial", side, name, seconds, scores))
    return rows


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
    """The one-to-one matching alone, maximum flow against networkx's Hopcroft-Karp, on the same graphs."""
    import networkx
    from networkx.algorithms import bipartite

    rows = []
    for name in PHOTOS:
        photo = square_photo(name, side)
        control = np.argwhere(canny(photo) > 0)
        for kind in ("shift", "jpeg", "rescale", "warp"):
            output = np.argwhere(canny(near_copy(photo, kind)) > 0)
            pairs = candidate_pairs(control, output, 0.0075 * float(np.hypot(side, side)))
            flow_seconds, partner = timed(lambda pairs=pairs: maximum_matching(pairs), repeats)

            def hopcroft_karp(pairs: Any = pairs) -> int:
                graph = networkx.Graph()
                count = pairs.shape[0]
                graph.add_nodes_from(range(count + pairs.shape[1]))
                coo = pairs.tocoo()
                graph.add_edges_from(zip(coo.row.tolist(), (coo.col + count).tolist(), strict=True))
                return len(bipartite.hopcroft_karp_matching(graph, top_nodes=range(count))) // 2

            hk_seconds, hk_matched = timed(hopcroft_karp, repeats)
            assert hk_matched == int((partner >= 0).sum()), "both are maximum matchings"
            rows.append({
                "side": side,
                "map": f"{name.removesuffix('.png')} {kind}",
                "pairs": int(pairs.nnz),
                "max_flow_seconds": round(flow_seconds, 4),
                "hopcroft_karp_seconds": round(hk_seconds, 4),
                "ratio": round(hk_seconds / flow_seconds, 1) if flow_seconds else None,
            })  # fmt: skip
    return rows


def format_tables(report: dict[str, Any]) -> str:
    lines = [f"adherence seconds per item ({report['machine']['cpu_count']} CPUs, {report['machine']['platform']})", ""]
    lines += [
        "| set | side | median s | max s | slowest map | matching of slowest |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for kind in ("realistic", "adversarial"):
        for side in report["sides"]:
            rows = [row for row in report["rows"] if row["set"] == kind and row["side"] == side]
            slowest = max(rows, key=lambda row: row["seconds"])
            median = statistics.median(row["seconds"] for row in rows)
            cells = [kind, side, f"{median:.3f}", f"{slowest['seconds']:.3f}", slowest["map"], slowest["matching"]]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "| side | map | edge pixels | matching | seconds |", "| ---: | --- | ---: | --- | ---: |"]
    lines += [
        f"| {row['side']} | {row['map']} | {row['edge_pixels']:,} | {row['matching']} | {row['seconds']:.3f} |"
        for row in report["rows"]
        if row["set"] == "adversarial"
    ]
    if report.get("methods"):
        lines += ["", "| side | near-copy | candidate pairs | max flow s | Hopcroft-Karp (networkx) s | ratio |"]
        lines += ["| ---: | --- | ---: | ---: | ---: | ---: |"]
        lines += [
            f"| {row['side']} | {row['map']} | {row['pairs']:,} | {row['max_flow_seconds']:.4f} | "
            f"{row['hopcroft_karp_seconds']:.4f} | {row['ratio']}x |"
            for row in report["methods"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", action="store_true", help="also time networkx's Hopcroft-Karp on the same graphs")
    parser.add_argument("--json", dest="json_path", default=str(DEFAULT_JSON))
    args = parser.parse_args(argv)
    warm_up = square_photo(PHOTOS[0], 64)
    control_adherence(canny(warm_up), canny(near_copy(warm_up, "shift")))  # imports SciPy and scikit-image
    report = {
        "machine": {"cpu_count": len(__import__("os").sched_getaffinity(0)), "platform": platform.platform()},
        "exact_match_budget": EXACT_MATCH_BUDGET,
        "sides": args.sides,
        "rows": realistic_rows(args.sides, args.repeats) + adversarial_rows(args.sides, args.repeats),
        "methods": method_rows(args.sides[0], args.repeats) if args.methods else [],
    }
    Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    print(format_tables(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
