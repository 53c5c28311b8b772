"""Control adherence: how closely an output follows the Canny edges it was conditioned on.

    scores, overlay = control_adherence(control_edges, canny_edges(output_rgb, 100, 200))

The output's own Canny edges (the item's thresholds, at the generation size) are compared with the
control edge map, pixel by pixel:

- strict: an output edge pixel counts when the control has an edge at the very same pixel, as in the
  published ControlNet figures (ControlNet++ reports Canny F1 of 34.65% for ControlNet 1.1 and 37.04%
  for its own model, same Canny settings on output and control);
- tolerant: edge pixels are matched one to one within 0.0075 x the image diagonal, the BSDS edge
  benchmark's rule: a maximum matching among each pixel's 16 nearest candidates within the tolerance,
  exact at every size (review/edge_matching);
- SSIM of the two edge maps (scikit-image). Empty regions agree, so an output with no edges at all can
  score well here: read it beside F1.

Precision is the share of output edges that follow the control, recall the share of control edges
the output follows. With no edges on one side they are 1 when the other side has none either, else 0.
An output smaller than the SSIM window (7 x 7) cannot be scored: UsageError. So is a control image of
another aspect ratio than the output, which resizing would fill with edges of its own.
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
from rr_controlnet.outputs.records import ONE_TO_ONE, Adherence, EdgeScores
from rr_controlnet.review.edge_matching import (
    candidate_pairs,
    maximum_matching,
    nearest_offsets_saturate,
    smaller_map_saturates,
)

TOLERANCE_FRACTION: Final = 0.0075  # of the image diagonal, as in the BSDS benchmark
SSIM_WINDOW: Final = 7  # scikit-image's default: the smallest side an output must have to be scored
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
    _refuse_too_small(control.shape)
    checkpoint = _checkpoint(should_stop)
    tolerance = default_tolerance(control.shape)
    control_points, output_points = np.argwhere(control), np.argwhere(output)
    checkpoint()
    followed_control, followed_output = _matched(control_points, output_points, tolerance, checkpoint)
    tolerant = _scores(int(followed_control.sum()), len(control_points), len(output_points))
    checkpoint()
    adherence = Adherence(
        strict=_rounded(strict_scores(control, output)),
        tolerant=_rounded(tolerant),
        tolerance_px=round(tolerance, 6),
        ssim=round(edge_ssim(control, output), 6),
        control_edges=len(control_points),
        output_edges=len(output_points),
        matching=ONE_TO_ONE,
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
    _refuse_too_small((height, width))
    if is_edge_map(control_pixels):
        if control_pixels.shape != (height, width):
            raise UsageError(
                f"control: an edge map must have the output's size, {width}x{height}; "
                f"got {control_pixels.shape[1]}x{control_pixels.shape[0]}"
            )
        control_edges = control_pixels
    else:
        _refuse_another_aspect(control_pixels.shape[:2], (height, width))
        control_edges = control_images(control_pixels, (width, height), resize, low, high).canny
    return output_adherence(output_rgb, control_edges, low, high)[0]


def _refuse_too_small(shape: tuple[int, ...]) -> None:
    """UsageError for an output under the SSIM window: too few pixels for any score to mean something."""
    height, width = shape[:2]
    if min(height, width) < SSIM_WINDOW:
        raise UsageError(
            f"output: {width}x{height} is too small to score (under the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window)"
        )


def _refuse_another_aspect(control_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
    """UsageError when a control image's aspect ratio is not the output's (to within a pixel of rounding):
    cropping, padding or stretching it to the output's size would draw edges the output never saw."""
    (control_height, control_width), (height, width) = control_shape[:2], output_shape[:2]
    width_at_height, height_at_width = control_width * height / control_height, control_height * width / control_width
    if abs(width_at_height - width) > 1 and abs(height_at_width - height) > 1:
        raise UsageError(
            f"control: {control_width}x{control_height} has another aspect ratio than the output's "
            f"{width}x{height}; give a control of the output's proportions"
        )


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
    """Precision, recall and F1 with edge pixels matched one to one within the tolerance."""
    control, output = np.asarray(control) > 0, np.asarray(output) > 0
    tolerance = default_tolerance(control.shape) if tolerance_px is None else tolerance_px
    followed_control, _ = _matched(np.argwhere(control), np.argwhere(output), tolerance)
    return _scores(int(followed_control.sum()), int(control.sum()), int(output.sum()))


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
    partner = nearest_offsets_saturate(control_points, output_points, tolerance)
    fewer, more = sorted((len(control_points), len(output_points)))
    if partner is None and more >= 2 * fewer:  # one map far denser: try from the sparser side first
        partner = smaller_map_saturates(control_points, output_points, tolerance, checkpoint)
    if partner is None:
        pairs = candidate_pairs(control_points, output_points, tolerance, checkpoint)
        partner = maximum_matching(pairs, checkpoint)
    followed_control = partner >= 0
    followed_output[partner[followed_control]] = True
    return followed_control, followed_output


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
    if adherence.matching != ONE_TO_ONE:  # scored by an older version, past its exact-matching budget
        lines.append(
            "\nThe tolerant scores are an upper bound (edge pixels with an edge of the other map within the "
            "tolerance), not a one-to-one matching: score the output again for exact ones."
        )
    return "\n".join(lines) + "\n"
