"""One-to-one matching of two edge maps' pixels within a tolerance: the tolerant adherence scores' count.

    pairs = candidate_pairs(control_points, output_points, tolerance)
    partner = maximum_matching(pairs)   # per control pixel its output pixel, or -1

Which pairs may match: each pixel's nearest MATCH_NEIGHBOURS pixels of the other map within the
tolerance, taken both ways (a pair is a candidate when either pixel has the other among its nearest).
"Nearest" is in a fixed order of the offsets within the tolerance: by distance, then row, then column
offset, so that ties on the pixel grid always resolve the same way.

The matching is a maximum one (exact, at every size): a greedy matching, nearest pairs first, is
grown by an auction (review/matching_auction: push-relabel for bipartite matching, every free control
bidding at once, the alternating distances recomputed exactly by a breadth-first search every so often)
until no free control reaches a free output, which proves it maximum (Berge); a maximum flow on the
residual graph takes over should the auction run out of work. Where the greedy matching already pairs
every pixel of one map, nothing more is needed, and where one map is far denser, smaller_map_saturates
may find the answer from the sparser map's own pairs. The candidates are found on the pixel grid, one
offset at a time for the pixels that still lack neighbours, never by a search tree. SciPy is imported
inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from rr_controlnet.review.matching_auction import grown_by_auction

MATCH_NEIGHBOURS: Final = 16


@dataclass(frozen=True)
class CandidatePairs:
    """Pairs of control and output pixels that may match, grouped by their offset (output - control):
    `offsets` (n x 2, dy dx) nearest first, pairs[starts[i]:starts[i + 1]] at offsets[i]."""

    control: np.ndarray  # int32 index into the control points
    output: np.ndarray  # int32 index into the output points
    starts: np.ndarray
    offsets: np.ndarray
    control_count: int
    output_count: int


def offsets_within(tolerance: float) -> np.ndarray:
    """Every (dy, dx) within `tolerance`, nearest first; ties by dy, then dx."""
    reach = int(np.floor(tolerance))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    dy, dx = dy.ravel(), dx.ravel()
    inside = dy * dy + dx * dx <= tolerance * tolerance
    dy, dx = dy[inside], dx[inside]
    order = np.lexsort((dx, dy, dy * dy + dx * dx))
    return np.stack([dy[order], dx[order]], axis=1).astype(np.int32)


def _grid(control_points: np.ndarray, output_points: np.ndarray, offsets: np.ndarray) -> tuple[tuple[int, int], int]:
    """The pixel grid both maps' points lie on (rows, columns), and the margin the offsets reach past it."""
    both = np.concatenate([control_points, output_points])
    shape = (int(both[:, 0].max()) + 1, int(both[:, 1].max()) + 1) if len(both) else (1, 1)
    return shape, int(np.abs(offsets).max()) if len(offsets) else 0


def _index_map(points: np.ndarray, shape: tuple[int, int], margin: int) -> np.ndarray:
    """A flat map, padded by `margin` on every side: each point's index at its pixel, -1 elsewhere."""
    index = np.full((shape[0] + 2 * margin) * (shape[1] + 2 * margin), -1, dtype=np.int32)
    index[_flat(points, shape, margin)] = np.arange(len(points), dtype=np.int32)
    return index


def _flat(points: np.ndarray, shape: tuple[int, int], margin: int) -> np.ndarray:
    return (points[:, 0].astype(np.int64) + margin) * (shape[1] + 2 * margin) + points[:, 1] + margin


def _nearest(
    points: np.ndarray,
    other: np.ndarray,
    offsets: np.ndarray,
    shape: tuple[int, int],
    margin: int,
    checkpoint: Callable[[], None] = lambda: None,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per offset, which `points` find a pixel of `other` there (and which), taking at most
    MATCH_NEIGHBOURS per point; and per point the offset position at which it had them all (or -1).
    `checkpoint` is called at each offset."""
    other_index = _index_map(other, shape, margin)
    flat = _flat(points, shape, margin)
    steps = offsets[:, 0].astype(np.int64) * (shape[1] + 2 * margin) + offsets[:, 1]
    found = np.zeros(len(points), dtype=np.int32)
    full_at = np.full(len(points), -1, dtype=np.int32)
    active = np.arange(len(points), dtype=np.int32)
    mine, theirs = [], []
    for position, step in enumerate(steps):
        checkpoint()
        hit = other_index[flat[active] + step]
        seen = hit >= 0
        who = active[seen]
        mine.append(who)
        theirs.append(hit[seen])
        if len(who):
            found[who] += 1
            done = found[who] >= MATCH_NEIGHBOURS
            if done.any():
                full_at[who[done]] = position
                active = active[found[active] < MATCH_NEIGHBOURS]
    return mine, theirs, full_at


def candidate_pairs(
    control_points: np.ndarray,
    output_points: np.ndarray,
    tolerance: float,
    checkpoint: Callable[[], None] = lambda: None,
) -> CandidatePairs:
    """The pairs that may match (see the module's docstring), from (n, 2) row-column pixel arrays.
    `checkpoint` is called at each offset, each way (it may raise to stop)."""
    control_points = np.asarray(control_points, dtype=np.int64).reshape(-1, 2)
    output_points = np.asarray(output_points, dtype=np.int64).reshape(-1, 2)
    offsets = offsets_within(tolerance)
    shape, margin = _grid(control_points, output_points, offsets)
    by_control, their_output, control_full_at = _nearest(
        control_points, output_points, offsets, shape, margin, checkpoint
    )
    by_output, their_control, _ = _nearest(output_points, control_points, offsets, shape, margin, checkpoint)
    # An output's nearest control at position p lies at offset offsets[p] from it, so the pair's offset
    # (output - control) is -offsets[p]: the group at the position of that offset. Kept only when the
    # control does not already have the output among its own nearest.
    position_of = {(int(dy), int(dx)): position for position, (dy, dx) in enumerate(offsets)}
    controls, outputs, starts = [], [], [0]
    for position, (dy, dx) in enumerate(offsets):
        checkpoint()
        mirrored = position_of[(-int(dy), -int(dx))]
        control_side, output_side = by_output[mirrored], their_control[mirrored]
        full_at = control_full_at[output_side]
        extra = (full_at >= 0) & (full_at < position)
        controls += [by_control[position], output_side[extra]]
        outputs += [their_output[position], control_side[extra]]
        starts.append(starts[-1] + len(by_control[position]) + int(extra.sum()))
    return CandidatePairs(
        control=np.concatenate(controls).astype(np.int32) if controls else np.zeros(0, np.int32),
        output=np.concatenate(outputs).astype(np.int32) if outputs else np.zeros(0, np.int32),
        starts=np.asarray(starts, dtype=np.int64),
        offsets=offsets,
        control_count=len(control_points),
        output_count=len(output_points),
    )


def nearest_offsets_saturate(
    control_points: np.ndarray, output_points: np.ndarray, tolerance: float
) -> np.ndarray | None:
    """A maximum matching found without listing the candidates, when there is one to find so: a greedy
    matching over the first MATCH_NEIGHBOURS offsets alone (a pair at one of them is always a candidate:
    fewer than MATCH_NEIGHBOURS offsets come before it) that pairs every pixel of one map. Per control
    point its output point or -1; None when the greedy matching leaves pixels free on both maps."""
    offsets = offsets_within(tolerance)[:MATCH_NEIGHBOURS]
    shape, margin = _grid(control_points, output_points, offsets)
    output_index = _index_map(output_points, shape, margin)
    flat = _flat(control_points, shape, margin)
    partner = np.full(len(control_points), -1, dtype=np.int32)
    taken = np.zeros(len(output_points), dtype=bool)
    free = np.arange(len(control_points))
    for dy, dx in offsets:
        found = output_index[flat[free] + int(dy) * (shape[1] + 2 * margin) + int(dx)]
        hit = found >= 0
        hit[hit] = ~taken[found[hit]]
        partner[free[hit]] = found[hit]
        taken[found[hit]] = True
        free = free[~hit]
        if not len(free) or taken.all():
            return partner
    return None


def smaller_map_saturates(
    control_points: np.ndarray,
    output_points: np.ndarray,
    tolerance: float,
    checkpoint: Callable[[], None] = lambda: None,
) -> np.ndarray | None:
    """A maximum matching found from the smaller map's side alone, when there is one to find so: each of its
    pixels' own MATCH_NEIGHBOURS nearest pixels of the other map (candidates by definition), matched as
    maximum_matching matches (greedy, then the auction) and pairing every pixel of the smaller map. Listing
    them is cheap where the other map is dense, and a map far denser than the other (an output of noise) is
    where listing the other way round costs most. Per control point its output point or -1; None when a
    pixel of the smaller map is left free. `checkpoint` is called at each offset and as maximum_matching
    calls it."""
    swapped = len(output_points) < len(control_points)
    smaller, larger = (output_points, control_points) if swapped else (control_points, output_points)
    offsets = offsets_within(tolerance)
    shape, margin = _grid(control_points, output_points, offsets)
    mine, theirs, _ = _nearest(smaller, larger, offsets, shape, margin, checkpoint)
    own_pairs = CandidatePairs(
        control=np.concatenate(mine).astype(np.int32),
        output=np.concatenate(theirs).astype(np.int32),
        starts=np.concatenate([[0], np.cumsum([len(who) for who in mine])]).astype(np.int64),
        offsets=offsets,
        control_count=len(smaller),
        output_count=len(larger),
    )
    partner = maximum_matching(own_pairs, checkpoint)
    if (partner < 0).any():
        return None
    if not swapped:
        return partner
    partner_of_control = np.full(len(control_points), -1, dtype=np.int32)
    partner_of_control[partner] = np.arange(len(smaller), dtype=np.int32)
    return partner_of_control


def greedy_matching(pairs: CandidatePairs) -> tuple[np.ndarray, np.ndarray]:
    """A maximal matching, nearest offsets first: (per control its output or -1, per output its control
    or -1). Within one offset no two pairs share a pixel, so each offset is matched at once."""
    partner_of_control = np.full(pairs.control_count, -1, dtype=np.int32)
    partner_of_output = np.full(pairs.output_count, -1, dtype=np.int32)
    for start, end in zip(pairs.starts[:-1], pairs.starts[1:], strict=True):
        control, output = pairs.control[start:end], pairs.output[start:end]
        free = (partner_of_control[control] < 0) & (partner_of_output[output] < 0)
        partner_of_control[control[free]] = output[free]
        partner_of_output[output[free]] = control[free]
    return partner_of_control, partner_of_output


def maximum_matching(pairs: CandidatePairs, checkpoint: Callable[[], None] = lambda: None) -> np.ndarray:
    """A maximum one-to-one matching of the candidate pairs: per control point its output point, or -1.
    `checkpoint` is called once the greedy matching is made and all along the auction: between its
    preparations, at each level of its exact recomputations of the distances and at each round (it may
    raise to stop)."""
    partner_of_control, partner_of_output = greedy_matching(pairs)
    checkpoint()
    if (partner_of_control >= 0).all() or (partner_of_output >= 0).all():
        return partner_of_control  # every pixel of one map is paired: nothing can be added
    work = AUCTION_WORK * len(pairs.control)
    auctioned = grown_by_auction((pairs.control, pairs.output), partner_of_control, partner_of_output, work, checkpoint)
    if auctioned is not None:
        return auctioned
    return _augmented(pairs, partner_of_control, partner_of_output)


# The auction's work, in pairs looked at, before it gives way to the maximum flow: this many times the pairs'
# count (never reached in the benchmark's maps).
AUCTION_WORK: Final = 200


def _augmented(pairs: CandidatePairs, partner_of_control: np.ndarray, partner_of_output: np.ndarray) -> np.ndarray:
    """The matching grown to a maximum one: a maximum flow on the residual graph (source -> free control
    -> output by an unmatched pair -> its control by a matched pair ... -> free output -> sink), kept to
    the nodes that lie on some path from the source to the sink."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    controls, outputs = pairs.control_count, pairs.output_count
    source, sink = controls + outputs, controls + outputs + 1
    unmatched = partner_of_control[pairs.control] != pairs.output
    matched_outputs = np.flatnonzero(partner_of_output >= 0)
    tails = np.concatenate([
        np.full(int((partner_of_control < 0).sum()), source), pairs.control[unmatched],
        controls + matched_outputs, controls + np.flatnonzero(partner_of_output < 0),
    ]).astype(np.int32)  # fmt: skip
    heads = np.concatenate([
        np.flatnonzero(partner_of_control < 0), controls + pairs.output[unmatched],
        partner_of_output[matched_outputs], np.full(int((partner_of_output < 0).sum()), sink),
    ]).astype(np.int32)  # fmt: skip
    size = controls + outputs + 2
    network = csr_matrix((np.ones(len(tails), dtype=np.int32), (tails, heads)), shape=(size, size))
    reached = np.zeros(size, dtype=bool)
    reached[breadth_first_order(network, source, directed=True, return_predecessors=False)] = True
    if not reached[sink]:
        return partner_of_control
    reaching = np.zeros(size, dtype=bool)
    reaching[breadth_first_order(network.T.tocsr(), sink, directed=True, return_predecessors=False)] = True
    kept = np.flatnonzero(reached & reaching)
    renumber = np.full(size, -1, dtype=np.int32)
    renumber[kept] = np.arange(len(kept), dtype=np.int32)
    sub = network[kept][:, kept].tocsr()
    flow = maximum_flow(sub, int(renumber[source]), int(renumber[sink]), method="dinic").flow.tocoo()
    used = flow.data > 0
    tail, head = kept[flow.row[used]], kept[flow.col[used]]
    added = (tail < controls) & (head >= controls) & (head < source)
    # A matched pair carrying flow (output -> control) is given up; an unmatched one carrying it is taken.
    partner = partner_of_control.copy()
    dropped = (tail >= controls) & (tail < source) & (head < controls)
    partner[head[dropped]] = -1
    partner[tail[added]] = head[added] - controls
    return partner
