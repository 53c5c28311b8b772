"""The auction that grows a matching of candidate pairs to a maximum one (review/edge_matching's last step):
push-relabel for bipartite matching, vectorized.

    partner = grown_by_auction((controls, outputs), partner_of_control, partner_of_output, work, checkpoint)

Each output carries a lower bound of its alternating distance to a free output. Every free control bids at
once for its output of least distance, evicting that output's control (which bids in the next round) and
raising the output's distance to its own second best plus one; a few bidders bid one at a time instead. The
distances are recomputed exactly by a breadth-first search from the free outputs after work of half the
pairs' count; when no free control reaches a free output, no augmenting path is left and the matching is
maximum (Berge). SciPy is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

# The auction's rounds between two exact relabellings: this many times the pairs' count in pairs looked at
# (measured best between 0.25 and 1 on random dots, checkerboards and swapped textures).
RELABEL_WORK: Final = 0.5
_UNREACHABLE: Final = np.int32(2**30)
# At most this many bidders bid one at a time, each until its path ends or this many pairs were looked at.
FEW_BIDDERS: Final = 8
FEW_BIDDERS_WORK: Final = 200_000


def grown_by_auction(
    pairs: tuple[np.ndarray, np.ndarray],
    partner_of_control: np.ndarray,
    partner_of_output: np.ndarray,
    total_work: float,
    checkpoint: Callable[[], None],
) -> np.ndarray | None:
    """A matching of the `pairs` (control and output indices, each pair once) grown to a maximum one by an
    auction (push-relabel for bipartite matching, every free
    control bidding at once): each output carries a lower bound of its alternating distance to a free output;
    a free control takes its nearest output by that distance, evicting the output's control, which bids in the
    next round, and raises the output's distance to its own second best plus one. Every so often the distances
    are recomputed exactly (a breadth-first search from the free outputs); once no free control reaches a free
    output, no augmenting path is left, so the matching is maximum (Berge). Returns per control its output or -1;
    None when `total_work` pairs were looked at first. `checkpoint` is called all along (it may raise to stop)."""
    controls, outputs = pairs
    counts = (len(partner_of_control), len(partner_of_output))
    by_control = _grouped(controls, outputs, counts)
    checkpoint()
    by_output = _grouped(outputs, controls, counts[::-1])
    partner_of_control, partner_of_output = partner_of_control.copy(), partner_of_output.copy()
    work = 0
    while work < total_work:
        distance, bidders = _distances(by_output, partner_of_control, partner_of_output, checkpoint)
        checkpoint()
        if not len(bidders):
            return partner_of_control
        budget = work + RELABEL_WORK * len(controls)
        while len(bidders) and work < budget:
            if len(bidders) <= FEW_BIDDERS:
                work += _bid_one_by_one(bidders, by_control, distance, partner_of_control, partner_of_output)
                break
            bidders, looked_at = _auction_round(bidders, by_control, distance, partner_of_control, partner_of_output)
            work += looked_at
            checkpoint()
    return None


def _grouped(keys: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """`values` (0..shape[1]-1) grouped by `keys` (0..shape[0]-1), ascending within each group: (starts, values)."""
    from scipy.sparse import coo_matrix

    table = coo_matrix((np.ones(len(keys), dtype=np.int8), (keys, values)), shape=shape)
    table = table.tocsr()  # a counting sort in C, then each group's values sorted
    return table.indptr.astype(np.int64), table.indices.astype(np.int32)


def _gathered(grouped: tuple[np.ndarray, np.ndarray], nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups of `nodes`, one after the other, and each group's length."""
    starts, values = grouped
    first = starts[nodes]
    lengths = starts[nodes + 1] - first
    return values[np.repeat(first - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))], lengths


def _distances(
    by_output: tuple[np.ndarray, np.ndarray],
    partner_of_control: np.ndarray,
    partner_of_output: np.ndarray,
    checkpoint: Callable[[], None] = lambda: None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each output's exact alternating distance to a free output (free: 0; matched: one more than the nearest
    output its control has another pair with), by a breadth-first search from the free outputs, calling
    `checkpoint` at each level; and the free controls that reach a free output (those with a pair to an output
    of finite distance)."""
    distance = np.full(len(partner_of_output), _UNREACHABLE, dtype=np.int32)
    frontier = np.flatnonzero(partner_of_output < 0).astype(np.int32)
    distance[frontier] = 0
    reaching = np.zeros(len(partner_of_control), dtype=bool)
    claim = np.empty(len(partner_of_output), dtype=np.int32)
    level = 0
    while len(frontier):
        checkpoint()
        controls, lengths = _gathered(by_output, frontier)
        partner = partner_of_control[controls]
        reaching[controls[partner < 0]] = True
        behind = partner[(partner >= 0) & (partner != np.repeat(frontier, lengths))]
        behind = behind[distance[behind] == _UNREACHABLE]
        level += 1
        distance[behind] = level
        frontier = _once_each(behind, claim)
    return distance, np.flatnonzero(reaching).astype(np.int32)


def _bid_one_by_one(
    bidders: np.ndarray,
    by_control: tuple[np.ndarray, np.ndarray],
    distance: np.ndarray,
    partner_of_control: np.ndarray,
    partner_of_output: np.ndarray,
) -> int:
    """The auction's rounds for a few bidders, one bid at a time (a round's fixed cost outweighs its work
    here): each evicted control bids next, following its augmenting path to its end. Returns the pairs looked
    at; bidders left free wait for the next exact distances."""
    starts, outputs = by_control
    looked_at = 0
    for bidder in bidders.tolist():
        control = bidder
        while control >= 0 and looked_at < FEW_BIDDERS_WORK:
            candidates = outputs[starts[control] : starts[control + 1]]
            distances = distance[candidates]
            looked_at += len(candidates) + 8
            best = int(distances.argmin())
            if distances[best] >= _UNREACHABLE:
                break
            distances[best] = _UNREACHABLE
            second = int(distances.min()) if len(distances) > 1 else int(_UNREACHABLE)
            output = int(candidates[best])
            evicted = int(partner_of_output[output])
            if evicted >= 0:
                partner_of_control[evicted] = -1
            partner_of_output[output], partner_of_control[control] = control, output
            distance[output] = _UNREACHABLE if second >= _UNREACHABLE - 1 else second + 1
            control = evicted
    return looked_at


def _once_each(nodes: np.ndarray, claim: np.ndarray) -> np.ndarray:
    """`nodes` without repeats, in linear time (`claim`: scratch space, one slot per node)."""
    positions = np.arange(len(nodes), dtype=np.int32)
    claim[nodes] = positions
    return nodes[claim[nodes] == positions]


def _auction_round(
    bidders: np.ndarray,
    by_control: tuple[np.ndarray, np.ndarray],
    distance: np.ndarray,
    partner_of_control: np.ndarray,
    partner_of_output: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Every bidder bids for its output of least distance (the first such in its pairs' order); each output
    goes to its lowest-numbered bidder. Returns the next round's bidders (losers and evicted controls) and how
    many pairs were looked at."""
    outputs, lengths = _gathered(by_control, bidders)
    starts = np.cumsum(lengths) - lengths
    # Distance and position in one key: the least key of a bidder's pairs is its best output, the first of ties.
    keys = distance[outputs].astype(np.int64) << 32 | (np.arange(len(outputs)) - np.repeat(starts, lengths))
    best = np.minimum.reduceat(keys, starts)
    chosen = starts + (best & 0xFFFFFFFF)
    keys[chosen] = np.int64(_UNREACHABLE) << 32
    second = (np.minimum.reduceat(keys, starts) >> 32).astype(np.int32)
    can_bid = (best >> 32) < _UNREACHABLE  # the others reach no free output: they stay free
    bidders, wanted, second = bidders[can_bid], outputs[chosen[can_bid]], second[can_bid]
    order = np.lexsort((bidders, wanted))
    first_bid = np.ones(len(order), dtype=bool)
    first_bid[1:] = wanted[order[1:]] != wanted[order[:-1]]
    winners = order[first_bid]
    control, output = bidders[winners], wanted[winners]
    evicted = partner_of_output[output]
    evicted = evicted[evicted >= 0]
    partner_of_control[evicted] = -1
    partner_of_output[output] = control
    partner_of_control[control] = output
    distance[output] = np.where(second[winners] >= _UNREACHABLE - 1, _UNREACHABLE, second[winners] + 1)
    losers = bidders[order[~first_bid]]
    return np.concatenate([losers, evicted]).astype(np.int32), len(outputs) + 64
