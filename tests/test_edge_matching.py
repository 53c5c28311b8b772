"""The tolerant adherence scores' one-to-one matching is a maximum matching at every size: checked against
a matching worked out independently (each pixel's nearest candidates listed by brute force, networkx's
Hopcroft-Karp on the whole graph), on small random and adversarial maps."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import networkx
import numpy as np
import pytest
from networkx.algorithms import bipartite

from rr_controlnet.review import edge_matching
from rr_controlnet.review.adherence import control_adherence
from rr_controlnet.review.edge_matching import (
    MATCH_NEIGHBOURS,
    candidate_pairs,
    greedy_matching,
    maximum_matching,
    nearest_offsets_saturate,
    offsets_within,
    smaller_map_saturates,
)


def brute_force_pairs(control: np.ndarray, output: np.ndarray, tolerance: float) -> set[tuple[int, int]]:
    """Each pixel's MATCH_NEIGHBOURS nearest pixels of the other map within the tolerance (nearest by the
    offsets' order), both ways, by comparing every pixel with every other."""
    order = {(int(dy), int(dx)): rank for rank, (dy, dx) in enumerate(offsets_within(tolerance))}
    pairs = set()
    for points, others, from_control in ((control, output, True), (output, control, False)):
        for index, point in enumerate(points):
            near = []
            for other_index, other in enumerate(others):
                offset = (int(other[0] - point[0]), int(other[1] - point[1]))
                if offset in order:
                    near.append((order[offset], other_index))
            for _, other_index in sorted(near)[:MATCH_NEIGHBOURS]:
                pairs.add((index, other_index) if from_control else (other_index, index))
    return pairs


def reference_matched(control_count: int, pairs: set[tuple[int, int]]) -> int:
    graph = networkx.Graph()
    graph.add_nodes_from(("control", index) for index in range(control_count))
    graph.add_edges_from((("control", c), ("output", o)) for c, o in pairs)
    top = [("control", index) for index in range(control_count)]
    return len(bipartite.hopcroft_karp_matching(graph, top_nodes=top)) // 2


def small_maps(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    side = int(rng.integers(12, 36))
    ys, xs = np.mgrid[0:side, 0:side]
    checker = (ys + xs) % 2 == 0
    dots = rng.random((side, side)) < 0.5
    dense = rng.random((side, side)) < 0.8
    sparse = np.zeros_like(dense)
    sparse[:, : side // 2] = rng.random((side, side // 2)) < 0.15
    return {
        "random dots": (rng.random((side, side)) < rng.uniform(0.05, 0.9), rng.random((side, side)) < 0.4),
        "checkerboard against its complement": (checker, ~checker),
        "dots shifted by the radius": (dots, np.roll(dots, 3, axis=0)),
        "dense against sparse": (dense, sparse),
        "grid shifted by a pixel": ((xs % 3 == 0) | (ys % 3 == 0), (xs % 3 == 1) | (ys % 3 == 1)),
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tolerance", [1.0, 2.3, 3.5])
def test_the_matching_is_maximum_against_a_brute_force_reference(seed: int, tolerance: float) -> None:
    for name, (control, output) in small_maps(seed).items():
        control_points, output_points = np.argwhere(control), np.argwhere(output)
        pairs = candidate_pairs(control_points, output_points, tolerance)
        found = set(zip(pairs.control.tolist(), pairs.output.tolist(), strict=True))
        reference = brute_force_pairs(control_points, output_points, tolerance)
        assert len(found) == len(pairs.control), f"{name}: a pair listed twice"
        assert found == reference, name
        partner = maximum_matching(pairs)
        matched = [(c, int(o)) for c, o in enumerate(partner) if o >= 0]
        assert all(pair in reference for pair in matched), f"{name}: a pair that is not a candidate"
        assert len({o for _, o in matched}) == len(matched), f"{name}: an output matched twice"
        assert len(matched) == reference_matched(len(control_points), reference), name


def assert_maximum(partner: np.ndarray, control_count: int, reference: set[tuple[int, int]], name: str) -> None:
    matched = [(c, int(o)) for c, o in enumerate(partner) if o >= 0]
    assert all(pair in reference for pair in matched), f"{name}: a pair that is not a candidate"
    assert len({o for _, o in matched}) == len(matched), f"{name}: an output matched twice"
    assert len(matched) == reference_matched(control_count, reference), name


@pytest.mark.parametrize("seed", range(4))
def test_the_auction_alone_reaches_the_maximum_and_the_flow_alone_does_too(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of growing the greedy matching: the auction (the flow not allowed), and the maximum flow
    it gives way to when it runs out of work (the auction given none)."""
    for name, (control, output) in small_maps(seed).items():
        control_points, output_points = np.argwhere(control), np.argwhere(output)
        pairs = candidate_pairs(control_points, output_points, 2.3)
        reference = brute_force_pairs(control_points, output_points, 2.3)
        with monkeypatch.context() as patched:
            patched.setattr(edge_matching, "_augmented", lambda *_: pytest.fail("the auction gave way to the flow"))
            assert_maximum(maximum_matching(pairs), len(control_points), reference, f"{name}, auction")
        with monkeypatch.context() as patched:
            patched.setattr(edge_matching, "AUCTION_WORK", 0)
            assert_maximum(maximum_matching(pairs), len(control_points), reference, f"{name}, flow")


def test_the_auction_grows_a_greedy_matching_that_leaves_long_augmenting_paths() -> None:
    # Stripes against themselves shifted by a pixel: the greedy matching pairs every column with the one to
    # its left and leaves a column free on each side; only paths across the whole map pair them.
    stripes = np.zeros((40, 40), dtype=bool)
    stripes[:, ::2] = True
    control_points, output_points = np.argwhere(stripes), np.argwhere(np.roll(stripes, 1, axis=1))
    pairs = candidate_pairs(control_points, output_points, 1.5)
    greedy, _ = greedy_matching(pairs)
    assert (greedy < 0).sum() > 0
    partner = maximum_matching(pairs)
    assert (partner >= 0).all()


def test_a_stop_asked_while_the_auction_runs_stops_it() -> None:
    stripes = np.zeros((40, 40), dtype=bool)
    stripes[:, ::2] = True
    pairs = candidate_pairs(np.argwhere(stripes), np.argwhere(np.roll(stripes, 1, axis=1)), 1.5)
    calls = []

    def checkpoint() -> None:
        calls.append(None)
        if len(calls) == 2:  # the first is after the greedy matching, the second inside the auction
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        maximum_matching(pairs, checkpoint)


def test_the_auction_asks_whether_to_stop_at_every_level_of_its_searches_and_every_round() -> None:
    stripes = np.zeros((40, 40), dtype=bool)
    stripes[:, ::2] = True  # against itself shifted by a pixel: augmenting paths across the whole width
    pairs = candidate_pairs(np.argwhere(stripes), np.argwhere(np.roll(stripes, 1, axis=1)), 1.5)
    counted, count_calls = stop_at(0)
    maximum_matching(pairs, count_calls)
    # 44 rounds and several breadth-first searches 20 levels deep or more: asked at each round and search
    # alone, it was asked 51 times.
    assert len(counted) > 150
    for call in (len(counted) // 3, len(counted)):
        calls, checkpoint = stop_at(call)
        with pytest.raises(StopAsked):
            maximum_matching(pairs, checkpoint)
        assert len(calls) == call


class StopAsked(Exception):
    pass


def stop_at(call: int) -> tuple[list[None], Callable[[], None]]:
    """A checkpoint that raises StopAsked at its `call`-th call, and the list of its calls."""
    calls: list[None] = []

    def checkpoint() -> None:
        calls.append(None)
        if len(calls) == call:
            raise StopAsked

    return calls, checkpoint


def test_a_stop_asked_while_the_candidates_are_listed_stops_at_the_next_offset() -> None:
    rng = np.random.default_rng(0)
    control, output = np.argwhere(rng.random((60, 60)) < 0.3), np.argwhere(rng.random((60, 60)) < 0.3)
    counted, count_calls = stop_at(0)
    candidate_pairs(control, output, 6.0, count_calls)
    offsets_used = len(counted)
    assert offsets_used > 3 * MATCH_NEIGHBOURS  # asked at each offset of both listings and of their merge
    for call in (1, offsets_used // 2, offsets_used):
        calls, checkpoint = stop_at(call)
        with pytest.raises(StopAsked):
            candidate_pairs(control, output, 6.0, checkpoint)
        assert len(calls) == call


def test_a_stop_asked_while_the_sparser_side_is_matched_stops_it() -> None:
    rng = np.random.default_rng(1)
    sparse, dense = np.argwhere(rng.random((60, 60)) < 0.05), np.argwhere(rng.random((60, 60)) < 0.6)
    counted, count_calls = stop_at(0)
    assert smaller_map_saturates(sparse, dense, 3.0, count_calls) is not None
    for call in (1, len(counted)):
        _, checkpoint = stop_at(call)
        with pytest.raises(StopAsked):
            smaller_map_saturates(sparse, dense, 3.0, checkpoint)


@pytest.mark.parametrize("seed", range(3))
def test_a_map_much_denser_than_the_other_is_matched_from_the_sparser_side(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sparse = np.zeros((30, 30), dtype=bool)
    sparse[rng.integers(0, 30, 12), rng.integers(0, 30, 12)] = True
    dense = rng.random((30, 30)) < 0.6
    for control, output in ((sparse, dense), (dense, sparse)):
        control_points, output_points = np.argwhere(control), np.argwhere(output)
        partner = smaller_map_saturates(control_points, output_points, 3.5)
        assert partner is not None
        reference = brute_force_pairs(control_points, output_points, 3.5)
        assert_maximum(partner, len(control_points), reference, "dense and sparse")
        assert (partner >= 0).sum() == min(len(control_points), len(output_points))
    # The greedy matching pairs the second control with the output on its own pixel, leaving the first
    # without one; the auction moves the second to its other output, and every control is paired.
    control_points, output_points = np.array([[0, 0], [0, 1]]), np.array([[0, 1], [1, 2]])
    partner = smaller_map_saturates(control_points, output_points, 1.5)
    assert partner is not None and partner.tolist() == [0, 1]
    # A sparse pixel with none of the other map near it: the full matching is needed.
    lonely = np.zeros((30, 30), dtype=bool)
    lonely[0, 0] = True
    assert smaller_map_saturates(np.argwhere(lonely), np.argwhere(np.roll(lonely, 15, axis=0)), 3.5) is None


@pytest.mark.parametrize("seed", range(3))
def test_a_map_within_a_pixel_of_the_other_is_matched_without_listing_candidates(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:24, 0:24]
    control = (ys % 4 == 0) & (xs % 4 == 0) & (rng.random((24, 24)) < 0.7)  # isolated pixels
    thinned = np.roll(control, 1, axis=1) & (rng.random((24, 24)) < 0.8)  # shifted, some pixels dropped
    for first, second in ((control, thinned), (thinned, control), (control, control)):
        first_points, second_points = np.argwhere(first), np.argwhere(second)
        partner = nearest_offsets_saturate(first_points, second_points, 2.5)
        assert partner is not None  # every pixel of the smaller map has one of the other a pixel away
        reference = brute_force_pairs(first_points, second_points, 2.5)
        matched = [(c, int(o)) for c, o in enumerate(partner) if o >= 0]
        assert all(pair in reference for pair in matched)
        assert len({o for _, o in matched}) == len(matched)
        assert len(matched) == reference_matched(len(first_points), reference)
    # Pixels left free on both maps: the full matching is needed.
    far = np.zeros((24, 24), dtype=bool)
    far[0, 0] = True
    assert nearest_offsets_saturate(np.argwhere(far), np.argwhere(np.roll(far, 12, axis=0)), 2.5) is None


def test_swapped_textures_at_1024_score_what_they_share_not_an_upper_bound() -> None:
    # A dense texture and a sparse one, in swapped places on control and output: within the tolerance every
    # edge pixel has one of the other map near it (the old upper bound: ~98%), but one to one, each block
    # can only pair as many pixels as its sparser texture has.
    rng = np.random.default_rng(3)
    side = 1024
    dense, sparse = rng.random((side, side // 2)) < 0.35, rng.random((side, side // 2)) < 0.1
    control, output = np.hstack([dense, sparse]), np.hstack([sparse, dense])
    adherence, _ = control_adherence(control.astype(np.uint8) * 255, output.astype(np.uint8) * 255)
    shared = 2 * int(sparse.sum()) / (int(dense.sum()) + int(sparse.sum()))
    assert adherence.tolerant.recall == pytest.approx(shared, abs=0.015)  # a few pixels cross the seam
    assert 0.4 < adherence.tolerant.f1 < 0.5
    near = cv2.distanceTransform(np.where(output, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    upper_bound = float((near[control] <= adherence.tolerance_px).mean())
    assert upper_bound > 0.97
