"""Control adherence: how closely an output follows the Canny edges it was conditioned on.

The output's own Canny edges (the item's thresholds, at the generation size) are compared with the
control edge map, pixel by pixel:

- strict: an output edge pixel counts when the control has an edge at the very same pixel, as in the
  published ControlNet figures (ControlNet++ reports Canny F1 of 34.65% for ControlNet 1.1 and 37.04%
  for its own model, same Canny settings on output and control);
- tolerant: edge pixels are matched one to one within 0.0075 x the image diagonal, the BSDS edge
  benchmark's rule; the matching is a maximum bipartite matching among each pixel's 16 nearest
  candidates within the tolerance (equal to the full matching on 512 x 512 test maps);
- SSIM of the two edge maps (scikit-image).

Precision is the share of output edges that follow the control, recall the share of control edges
the output follows. With no edges on one side they are 1 when the other side has none either, else 0.
scikit-image and SciPy are imported inside the functions: `--help` and `validate` never load them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

TOLERANCE_FRACTION: Final = 0.0075  # of the image diagonal, as in the BSDS benchmark
MATCH_NEIGHBOURS: Final = 16
# Colours of the overlay: control edges the output follows, control edges it misses, edges it adds.
FOLLOWED: Final = (255, 255, 255)
MISSED: Final = (255, 64, 64)
EXTRA: Final = (64, 200, 255)


@dataclass(frozen=True)
class EdgeScores:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class Adherence:
    strict: EdgeScores
    tolerant: EdgeScores
    tolerance_px: float
    ssim: float
    control_edges: int  # edge pixels of the control map
    output_edges: int  # edge pixels of the output's own Canny map

    def as_dict(self) -> dict[str, Any]:
        return {key: _rounded(value) for key, value in asdict(self).items()}


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _rounded(inner) for key, inner in value.items()}
    return round(value, 6) if isinstance(value, float) else value


def control_adherence(control: np.ndarray, output: np.ndarray) -> tuple[Adherence, np.ndarray]:
    """Scores of an output's edge map against its control edge map (both HxW, nonzero = edge), and an
    RGB overlay of the two: white where the output follows the control, red where it misses a control
    edge, blue where it draws an edge the control does not have (within the tolerance)."""
    control, output = np.asarray(control) > 0, np.asarray(output) > 0
    if control.shape != output.shape:
        raise ValueError(f"edge maps differ in size: {control.shape} and {output.shape}")
    tolerance = default_tolerance(control.shape)
    control_points, output_points = np.argwhere(control), np.argwhere(output)
    followed_control, followed_output = _matched(control_points, output_points, tolerance)
    adherence = Adherence(
        strict=strict_scores(control, output),
        tolerant=_scores(int(followed_control.sum()), len(control_points), len(output_points)),
        tolerance_px=tolerance,
        ssim=edge_ssim(control, output),
        control_edges=len(control_points),
        output_edges=len(output_points),
    )
    overlay = np.zeros((*control.shape, 3), dtype=np.uint8)
    overlay[tuple(output_points[~followed_output].T)] = EXTRA
    overlay[tuple(control_points[~followed_control].T)] = MISSED
    overlay[tuple(control_points[followed_control].T)] = FOLLOWED
    return adherence, overlay


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
    control_points, output_points = np.argwhere(control), np.argwhere(output)
    followed, _ = _matched(control_points, output_points, tolerance)
    return _scores(int(followed.sum()), len(control_points), len(output_points))


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


def _matched(control_points: np.ndarray, output_points: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Which control and which output points a one-to-one matching within `tolerance` pairs up."""
    followed_control = np.zeros(len(control_points), dtype=bool)
    followed_output = np.zeros(len(output_points), dtype=bool)
    if not len(control_points) or not len(output_points):
        return followed_control, followed_output
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching
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
    graph = coo_matrix(
        (np.ones(len(rows_all), dtype=np.int8), (rows_all, cols_all)), shape=(len(control_points), len(output_points))
    ).tocsr()
    graph.data[:] = 1  # pairs found from both sides were summed
    partner = maximum_bipartite_matching(graph, perm_type="column")  # per control point: its output point
    followed_control = partner >= 0
    followed_output[partner[followed_control]] = True
    return followed_control, followed_output


def _scores(matches: int, control_count: int, output_count: int) -> EdgeScores:
    precision = matches / output_count if output_count else float(control_count == 0)
    recall = matches / control_count if control_count else float(output_count == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EdgeScores(precision, recall, f1)
