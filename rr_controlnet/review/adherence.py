"""Control adherence: how closely an output follows the Canny edges it was conditioned on.

    scores, overlay = control_adherence(control_edges, canny_edges(output_rgb, 100, 200))

The output's own Canny edges (the item's thresholds, at the generation size) are compared with the
control edge map, pixel by pixel:

- strict: an output edge pixel counts when the control has an edge at the very same pixel, as in the
  published ControlNet figures (ControlNet++ reports Canny F1 of 34.65% for ControlNet 1.1 and 37.04%
  for its own model, same Canny settings on output and control);
- tolerant: edge pixels are matched one to one within 0.0075 x the image diagonal, the BSDS edge
  benchmark's rule: a maximum matching among each pixel's 16 nearest candidates within the tolerance,
  found as a maximum flow (Dinic's algorithm: polynomial, where SciPy's bipartite matching can take
  exponential time on two nearly parallel edge maps, scipy/scipy#26147). Past EXACT_MATCH_BUDGET edge
  pixels on either map the matching could take seconds, so the number of matched pairs is taken at its
  upper bound instead: the smaller of the two maps' counts of edge pixels that have an edge of the other
  map within the tolerance (never below the exact scores: up to 6 points of F1 above them on near-copies
  of photos, and a pure-noise output still scores low, its many edges keeping precision small). `matching` says which;
- SSIM of the two edge maps (scikit-image). Empty regions agree, so an output with no edges at all can
  score well here: read it beside F1.

Precision is the share of output edges that follow the control, recall the share of control edges
the output follows. With no edges on one side they are 1 when the other side has none either, else 0.
scikit-image and SciPy are imported inside the functions: `--help` and `validate` never load them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np

from rr_controlnet.errors import ItemFailed, ScoringStopped, UsageError
from rr_controlnet.images import canny_edges, control_images, is_edge_map, model_rgb, pixels_of
from rr_controlnet.manifest.checks import value_problems
from rr_controlnet.manifest.fields import Canny, Params
from rr_controlnet.outputs.records import ONE_TO_ONE, UPPER_BOUND, Adherence, EdgeScores

TOLERANCE_FRACTION: Final = 0.0075  # of the image diagonal, as in the BSDS benchmark
MATCH_NEIGHBOURS: Final = 16
# Edge pixels on either map up to which the tolerant scores come from an exact one-to-one matching.
# Real outputs stay inside it (near-copies of a textured photo at 1024 x 1024 have about 37,000); the
# slowest maps measured at the budget, random dots on both maps, take about a second (bench/adherence.py).
EXACT_MATCH_BUDGET: Final = 40_000
# Colours of the overlay: control edges the output follows, control edges it misses, edges it adds.
FOLLOWED: Final = (255, 255, 255)
MISSED: Final = (255, 64, 64)
EXTRA: Final = (64, 200, 255)


def _rounded(scores: EdgeScores) -> EdgeScores:
    """Scores to 6 decimals: what summary.json, the recording and every report then show alike."""
    return EdgeScores(round(scores.precision, 6), round(scores.recall, 6), round(scores.f1, 6))


def control_adherence(
    control: np.ndarray, output: np.ndarray, should_stop: Callable[[], bool] | None = None
) -> tuple[Adherence, np.ndarray]:
    """Scores of an output's edge map against its control edge map (both HxW, nonzero = edge), and an
    RGB overlay of the two: white where the output follows the control, red where it misses a control
    edge, blue where it draws an edge the control does not have (within the tolerance).

    `should_stop` is asked between stages; when it answers True, ScoringStopped is raised.
    """
    control, output = np.asarray(control) > 0, np.asarray(output) > 0
    if control.shape != output.shape:
        raise ValueError(f"edge maps differ in size: {control.shape} and {output.shape}")
    checkpoint = _checkpoint(should_stop)
    tolerance = default_tolerance(control.shape)
    control_points, output_points = np.argwhere(control), np.argwhere(output)
    checkpoint()
    tolerant, followed_control, followed_output, method = _tolerant(
        control, output, control_points, output_points, tolerance, checkpoint
    )
    checkpoint()
    adherence = Adherence(
        strict=_rounded(strict_scores(control, output)),
        tolerant=_rounded(tolerant),
        tolerance_px=round(tolerance, 6),
        ssim=round(edge_ssim(control, output), 6),
        control_edges=len(control_points),
        output_edges=len(output_points),
        matching=method,
    )
    checkpoint()
    overlay = np.zeros((*control.shape, 3), dtype=np.uint8)
    overlay[tuple(output_points[~followed_output].T)] = EXTRA
    overlay[tuple(control_points[~followed_control].T)] = MISSED
    overlay[tuple(control_points[followed_control].T)] = FOLLOWED
    return adherence, overlay


def output_adherence(
    output_rgb: np.ndarray,
    control_edges: np.ndarray,
    low: int,
    high: int,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Adherence, np.ndarray]:
    """An output image (HxWx3 uint8) scored as the batch scores it: its Canny edges at the item's thresholds
    against the control edge map it was conditioned on; and the overlay."""

    return control_adherence(control_edges, canny_edges(output_rgb, low, high), should_stop)


def image_adherence(output: Any, control: Any, low: int = 100, high: int = 200, resize: str = "crop") -> Adherence:
    """Control adherence of an output image to its control, scored as the batch scores its items.

    `output` and `control` are image paths, PIL images or numpy arrays. A control of one channel holding
    only 0 and 255 (or 0 and 1, or bool) is an edge map, which must have the output's size; any other
    control is an image, resized to the output's size (`resize`: crop, fit or stretch, as in a manifest)
    whose Canny edges are taken at `low`/`high`. Raises UsageError naming what is wrong.
    """

    problems = value_problems(Canny, {"low": low, "high": high}) + value_problems(Params, {"resize": resize})
    if not problems and low >= high:
        problems.append(f"low must be below high, got {low} >= {high}")
    if problems:
        raise UsageError("; ".join(problems))
    try:
        output_rgb = model_rgb(pixels_of(output, "output"))
        control_pixels = pixels_of(control, "control")
    except ItemFailed as exc:
        raise UsageError(str(exc)) from None
    height, width = output_rgb.shape[:2]
    if is_edge_map(control_pixels):
        if control_pixels.shape != (height, width):
            raise UsageError(
                f"control: an edge map must have the output's size, {width}x{height}; "
                f"got {control_pixels.shape[1]}x{control_pixels.shape[0]}"
            )
        control_edges = control_pixels
    else:
        control_edges = control_images(control_pixels, (width, height), resize, low, high).canny
    return output_adherence(output_rgb, control_edges, low, high)[0]


def _checkpoint(should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    def checkpoint() -> None:
        if should_stop is not None and should_stop():
            raise ScoringStopped("stopped while scoring control adherence")

    return checkpoint


def default_tolerance(shape: tuple[int, ...]) -> float:
    """The BSDS rule: edge pixels match within this fraction of the image diagonal."""
    return TOLERANCE_FRACTION * float(np.hypot(*shape[:2]))


def strict_scores(control: np.ndarray, output: np.ndarray) -> EdgeScores:
    """Pixel-exact precision, recall and F1 of `output` edges against `control` edges."""
    control, output = np.asarray(control) > 0, np.asarray(output) > 0
    return _scores(int((control & output).sum()), int(control.sum()), int(output.sum()))


def tolerant_scores(control: np.ndarray, output: np.ndarray, tolerance_px: float | None = None) -> EdgeScores:
    """Precision, recall and F1 with edge pixels matched one to one within the tolerance (its upper bound
    past EXACT_MATCH_BUDGET edge pixels)."""
    control, output = np.asarray(control) > 0, np.asarray(output) > 0
    tolerance = default_tolerance(control.shape) if tolerance_px is None else tolerance_px
    return _tolerant(control, output, np.argwhere(control), np.argwhere(output), tolerance)[0]


def _tolerant(
    control: np.ndarray,
    output: np.ndarray,
    control_points: np.ndarray,
    output_points: np.ndarray,
    tolerance: float,
    checkpoint: Callable[[], None] = lambda: None,
) -> tuple[EdgeScores, np.ndarray, np.ndarray, str]:
    """The tolerant scores, which control and output points count as followed, and how they were found."""
    if max(len(control_points), len(output_points)) <= EXACT_MATCH_BUDGET:
        followed_control, followed_output = _matched(control_points, output_points, tolerance, checkpoint)
        matched = int(followed_control.sum())
        return _scores(matched, len(control_points), len(output_points)), followed_control, followed_output, ONE_TO_ONE
    followed_control, followed_output = _near(control, output, tolerance), _near(output, control, tolerance)
    bound = min(int(followed_control.sum()), int(followed_output.sum()))
    return _scores(bound, len(control_points), len(output_points)), followed_control, followed_output, UPPER_BOUND


def ssim_window(shape: tuple[int, ...]) -> int:
    """SSIM's window for an image of this shape: 7 (scikit-image's default), or the largest odd side that
    fits a smaller image; under 3, SSIM is not defined."""
    return min(7, *(side if side % 2 else side - 1 for side in shape[:2]))


def edge_ssim(control: np.ndarray, output: np.ndarray) -> float:
    """SSIM of two edge maps, as 0/1 images."""
    from skimage.metrics import structural_similarity

    control = (np.asarray(control) > 0).astype(np.float64)
    output = (np.asarray(output) > 0).astype(np.float64)
    window = ssim_window(control.shape)
    if window < 3:
        return float(np.array_equal(control, output))
    return float(structural_similarity(control, output, data_range=1.0, win_size=window))


def candidate_pairs(control_points: np.ndarray, output_points: np.ndarray, tolerance: float) -> Any:
    """The pairs that may match, as a sparse control x output matrix: each point's nearest candidates on
    the other map (up to MATCH_NEIGHBOURS, both ways) within the tolerance."""
    from scipy.sparse import coo_matrix
    from scipy.spatial import cKDTree

    k = min(MATCH_NEIGHBOURS, len(output_points), len(control_points))
    rows, cols = [], []
    near_output = cKDTree(output_points).query(control_points, k=k, distance_upper_bound=tolerance)
    near_control = cKDTree(control_points).query(output_points, k=k, distance_upper_bound=tolerance)
    for (distances, indices), from_control in ((near_output, True), (near_control, False)):
        distances, indices = distances.reshape(len(distances), -1), indices.reshape(len(indices), -1)
        origin = np.repeat(np.arange(len(distances)), distances.shape[1])
        found = np.isfinite(distances.ravel())
        rows.append(origin[found] if from_control else indices.ravel()[found])
        cols.append(indices.ravel()[found] if from_control else origin[found])
    rows_all, cols_all = np.concatenate(rows), np.concatenate(cols)
    pairs = coo_matrix(
        (np.ones(len(rows_all), dtype=np.int32), (rows_all, cols_all)), shape=(len(control_points), len(output_points))
    ).tocsr()
    pairs.data[:] = 1  # pairs found from both sides were summed
    return pairs


def maximum_matching(pairs: Any) -> np.ndarray:
    """A maximum one-to-one matching of a sparse control x output matrix of allowed pairs: per control
    point its output point, or -1. Solved as a unit-capacity maximum flow (Dinic), source -> control ->
    output -> sink, which stays polynomial on the layered graphs near-copies make."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    control_count, output_count = pairs.shape
    source, sink = control_count + output_count, control_count + output_count + 1
    allowed = pairs.tocoo()
    tails = np.concatenate([np.full(control_count, source), allowed.row, control_count + np.arange(output_count)])
    heads = np.concatenate([np.arange(control_count), control_count + allowed.col, np.full(output_count, sink)])
    size = control_count + output_count + 2
    network = csr_matrix((np.ones(len(tails), dtype=np.int32), (tails, heads)), shape=(size, size))
    flow = maximum_flow(network, source, sink, method="dinic").flow.tocoo()
    used = (flow.data > 0) & (flow.row < control_count) & (flow.col >= control_count) & (flow.col < source)
    partner = np.full(control_count, -1, dtype=np.int64)
    partner[flow.row[used]] = flow.col[used] - control_count
    return partner


def _matched(
    control_points: np.ndarray,
    output_points: np.ndarray,
    tolerance: float,
    checkpoint: Callable[[], None] = lambda: None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which control and which output points a one-to-one matching within `tolerance` pairs up."""
    followed_control = np.zeros(len(control_points), dtype=bool)
    followed_output = np.zeros(len(output_points), dtype=bool)
    if not len(control_points) or not len(output_points):
        return followed_control, followed_output
    pairs = candidate_pairs(control_points, output_points, tolerance)
    checkpoint()
    partner = maximum_matching(pairs)
    followed_control = partner >= 0
    followed_output[partner[followed_control]] = True
    return followed_control, followed_output


def _near(edges: np.ndarray, other: np.ndarray, tolerance: float) -> np.ndarray:
    """Per edge pixel of `edges` (in np.argwhere order): whether `other` has an edge within the tolerance."""
    import cv2

    if not other.any():
        return np.zeros(int(edges.sum()), dtype=bool)
    # Distance from every pixel to the nearest edge pixel of `other` (exact Euclidean: DIST_MASK_PRECISE).
    distance = cv2.distanceTransform(np.where(other, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[edges] <= tolerance


def _scores(matches: int, control_count: int, output_count: int) -> EdgeScores:
    precision = matches / output_count if output_count else float(control_count == 0)
    recall = matches / control_count if control_count else float(output_count == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EdgeScores(precision, recall, f1)


def adherence_markdown(adherence: Adherence) -> str:
    """Control adherence as a markdown table, with what each row means."""
    strict, tolerant = adherence.strict, adherence.tolerant
    rows = [
        ("F1", strict.f1, tolerant.f1),
        ("precision (output edges on control edges)", strict.precision, tolerant.precision),
        ("recall (control edges the output follows)", strict.recall, tolerant.recall),
    ]
    lines = [
        f"| score | pixel-exact | within {adherence.tolerance_px:.1f} px |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {exact:.1%} | {near:.1%} |" for name, exact, near in rows),
        f"| SSIM of the edge maps | {adherence.ssim:.3f} | |",
        "",
        f"{adherence.output_edges:,} output edge pixels, {adherence.control_edges:,} control edge pixels. "
        "Overlay: white = control edge followed, red = missed, blue = an edge the control does not have.",
    ]
    if adherence.matching == UPPER_BOUND:
        lines.append(
            f"\nMore than {EXACT_MATCH_BUDGET:,} edge pixels on one map: the tolerant scores are an upper bound "
            "(edge pixels with an edge of the other map within the tolerance), not a one-to-one matching."
        )
    return "\n".join(lines) + "\n"
