"""Per (crop, class) rules of UPSTREAM.md §9.2 on hand-computable arrays."""

import itertools
import math

import numpy as np
import pytest
from csc_evaluator import scoring
from csc_evaluator.constants import Constants
from scipy import ndimage

C = Constants()
VS = (4.0, 4.0, 4.0)
NORM = math.sqrt(48.0)  # ||(4, 4, 4)||


def nh(d, norm=NORM):
    return 1.01 ** (-d / norm)


def vol(shape=(10, 10, 10), dtype=np.uint16):
    return np.zeros(shape, dtype)


# ---------------------------------------------------------------- semantic
def test_semantic_counts_and_positive_is_foreground():
    t = vol(dtype=np.uint8)
    t[:5] = 1  # 500 voxels
    p = np.zeros(t.shape, np.float32)
    p[3:7] = 0.25  # any value > 0 counts: 400 voxels, 200 overlap
    assert scoring.score_semantic(p, t) == {"tp": 200, "fp": 200, "fn": 300, "status": "scored"}


# ---------------------------------------------------------------- relabelling
def test_relabel_touching_ids_stay_apart_and_split_ids_become_two():
    p = vol()
    p[0:2, 0:2, 0:2] = 7
    p[2:4, 0:2, 0:2] = 9  # touches id 7 but is a different id
    p[8, 8, 8] = 7  # second blob of id 7
    p[9, 9, 9] = 7  # diagonal neighbour: 26-connected to the previous voxel
    labels, n = scoring.relabel(p)
    assert n == 3
    assert len(np.unique(labels[p == 9])) == 1 and labels[8, 8, 8] == labels[9, 9, 9]
    assert labels[0, 0, 0] != labels[8, 8, 8]


# ---------------------------------------------------------------- instance cases
def test_perfect_match():
    t = vol()
    t[1:3, 1:3, 1:3] = 1
    t[6:9, 6:9, 6:9] = 2
    r = scoring.score_instance(t.copy(), t, VS, constants=C)
    assert r == {"tp": 2, "fp": 0, "fn": 0, "hausdorff_norm_sum": 2.0, "n_hausdorff": 2, "status": "scored"}


def test_binary_mask_prediction_is_split_into_objects():
    t = vol()
    t[1:3, 1:3, 1:3] = 1
    t[6:9, 6:9, 6:9] = 2
    r = scoring.score_instance((t > 0).astype(np.uint8), t, VS, constants=C)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 0)


def test_shift_by_one_voxel_gives_one_voxel_hausdorff():
    t = vol()
    t[1:3, 1:3, 1:3] = 1
    p = vol()
    p[2:4, 1:3, 1:3] = 5  # IoU 4/12: matched (no 0.5 threshold)
    r = scoring.score_instance(p, t, VS, constants=C)
    assert (r["tp"], r["fp"], r["fn"], r["n_hausdorff"]) == (1, 0, 0, 1)
    assert r["hausdorff_norm_sum"] == pytest.approx(nh(4.0), abs=1e-7)


def test_low_iou_is_still_matched():
    t = vol()
    t[0:10, 0:2, 0:2] = 1  # 40 voxels
    p = vol()
    p[0:1, 0:2, 0:2] = 1  # 4 voxels inside: IoU 0.1
    r = scoring.score_instance(p, t, VS, constants=C)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 0)
    assert r["hausdorff_norm_sum"] == pytest.approx(nh(20.0), abs=1e-7)  # 9 voxels = 36 nm, capped at 20


def test_all_false_positives():
    p = vol()
    p[1, 1, 1] = 1
    p[5, 5, 5] = 1
    r = scoring.score_instance(p, vol(), VS, constants=C)
    cap = 20.0  # min(4 nm * 10) / 2
    assert (r["tp"], r["fp"], r["fn"], r["n_hausdorff"]) == (0, 2, 0, 2)
    assert r["hausdorff_norm_sum"] == pytest.approx(2 * nh(cap), abs=1e-6)


def test_all_false_negatives():
    t = vol()
    t[1, 1, 1] = 1
    t[5, 5, 5] = 2
    t[8, 8, 8] = 3
    r = scoring.score_instance(vol(), t, VS, constants=C)
    assert (r["tp"], r["fp"], r["fn"], r["n_hausdorff"]) == (0, 0, 3, 3)
    assert r["hausdorff_norm_sum"] == pytest.approx(3 * nh(20.0), abs=1e-6)


def test_empty_vs_empty_contributes_nothing():
    r = scoring.score_instance(vol(), vol(), VS, constants=C)
    assert r == {"tp": 0, "fp": 0, "fn": 0, "hausdorff_norm_sum": 0.0, "n_hausdorff": 0, "status": "scored"}


def test_unmatched_prediction_adds_a_capped_entry():
    t = vol()
    t[1:3, 1:3, 1:3] = 1
    p = t.copy()
    p[7, 7, 7] = 2  # an extra object far away
    r = scoring.score_instance(p, t, VS, constants=C)
    assert (r["tp"], r["fp"], r["fn"], r["n_hausdorff"]) == (1, 1, 0, 2)
    assert r["hausdorff_norm_sum"] == pytest.approx(1.0 + nh(20.0), abs=1e-6)


def test_hausdorff_is_capped_at_half_the_shortest_side():
    t = vol((40, 4, 4))
    t[0:2, 0:2, 0:2] = 1
    p = vol((40, 4, 4))
    p[0:2, 0:2, 0:2] = 1
    p[39, 0, 0] = 1  # same id, but a separate blob -> its own component, unmatched
    p2 = p.copy()
    p2[2:40, 0, 0] = 1  # now connected: one object reaching 38 voxels further
    r = scoring.score_instance(p2, t, VS, constants=C)
    cap = 4 * 4 / 2  # shortest side 4 voxels * 4 nm / 2 = 8 nm
    assert r["hausdorff_norm_sum"] == pytest.approx(nh(cap), abs=1e-7)


def test_anisotropic_voxels_are_respected():
    vs = (8.0, 2.0, 2.0)
    t = vol((10, 20, 20))
    t[2:4, 5:10, 5:10] = 1
    p = vol((10, 20, 20))
    p[2:4, 5:12, 5:10] = 1  # two more voxels along y: 4 nm
    r = scoring.score_instance(p, t, vs, constants=C)
    assert r["hausdorff_norm_sum"] == pytest.approx(nh(4.0, math.sqrt(72.0)), abs=1e-7)
    p = vol((10, 20, 20))
    p[2:5, 5:10, 5:10] = 1  # one more voxel along z: 8 nm
    r = scoring.score_instance(p, t, vs, constants=C)
    assert r["hausdorff_norm_sum"] == pytest.approx(nh(8.0, math.sqrt(72.0)), abs=1e-7)


def test_ratio_guard_skips_crop():
    t = vol((20, 20, 20))
    t[0, 0, 0] = 1  # nG = 1: cutoff 10 + 50 * exp(-1/5) = 50.94
    p = vol((20, 20, 20))
    coords = [(z, y, x) for z in range(0, 20, 2) for y in range(0, 20, 2) for x in range(0, 20, 2)]
    for k, c in enumerate(coords[:51]):
        p[c] = k + 1
    r = scoring.score_instance(p, t, VS, constants=C)
    assert r["status"] == "skipped_too_many_instances" and (r["tp"], r["fp"], r["fn"], r["n_hausdorff"]) == (0, 0, 0, 0)
    p[coords[50]] = 0  # 50 predictions: within the cutoff
    assert scoring.score_instance(p, t, VS, constants=C)["status"] == "scored"


def test_ratio_guard_uses_max_gt_id_and_env_override(monkeypatch):
    t = vol()
    t[0, 0, 0] = 100  # nG = 100 (max id), though only one object: cutoff ~10
    p = vol()
    for k in range(5):
        p[2 * k, 5, 5] = 1
    assert scoring.score_instance(p, t, VS, constants=C)["status"] == "scored"
    monkeypatch.setenv("FINAL_INSTANCE_RATIO_CUTOFF", "0.01")
    c = Constants.from_env()
    assert c.ratio_cutoff(100) == pytest.approx(0.01 + 50 * math.exp(-20))
    assert scoring.score_instance(p, t, VS, constants=c)["status"] == "skipped_too_many_instances"


def test_overlap_edge_guard(monkeypatch):
    t = vol()
    t[0:2] = 1
    t[5:7] = 2
    monkeypatch.setenv("MAX_OVERLAP_EDGES", "1")
    r = scoring.score_instance(t.copy(), t, VS, constants=Constants.from_env())
    assert r["status"] == "skipped_too_many_instances"


def test_optimal_not_greedy():
    # g1 overlaps p1 (IoU 0.6) and p2 (0.4); g2 overlaps only p1. Greedy on IoU matches g1-p1 and leaves
    # g2 unmatched; the optimum matches g1-p2 and g2-p1 (two TPs).
    ov = scoring.Overlaps(2, 2, np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.6, 0.4, 0.3], np.float32))
    assert scoring.optimal_matching(ov, C.mcmf_cost_scale) == {2: 1, 1: 2}


def test_costs_truncate_like_the_official():
    iou = np.array([0.5, 1 / 3, 1e-30, 1.0], np.float32)
    assert scoring.match_costs(iou, 1_000_000).tolist() == [int((1.0 - float(v)) * 1_000_000) for v in iou]


# ---------------------------------------------------------------- matching == official min-cost flow
def _flow_cost(mapping, costs, n_gt, scale):
    matched = {g: costs[(g - 1, p - 1)] for p, g in mapping.items()}
    return sum(matched.values()) + (scale + 1) * (n_gt - len(matched))


def _brute_force_min(n_gt, n_pred, costs, scale):
    best = None
    for choice in itertools.product(range(-1, n_pred), repeat=n_gt):
        used = [c for c in choice if c >= 0]
        if len(used) != len(set(used)) or any(c >= 0 and (g, c) not in costs for g, c in enumerate(choice)):
            continue
        total = sum(costs[(g, c)] if c >= 0 else scale + 1 for g, c in enumerate(choice))
        best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_matching_reaches_the_min_cost_flow_optimum(seed):
    rng = np.random.default_rng(seed)
    n_gt, n_pred = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    scale = 1_000_000
    # few distinct IoU levels so ties are frequent
    levels = np.array([0.1, 0.25, 0.5, 0.5, 0.75, 1.0], np.float32)
    pairs = [(g, p) for g in range(n_gt) for p in range(n_pred) if rng.random() < 0.6]
    if not pairs:
        pairs = [(0, 0)]
    rows = np.array([g for g, _ in pairs])
    cols = np.array([p for _, p in pairs])
    iou = levels[rng.integers(0, len(levels), len(pairs))]
    ov = scoring.Overlaps(n_gt, n_pred, rows, cols, iou)
    mapping = scoring.optimal_matching(ov, scale)
    costs = dict(zip(pairs, scoring.match_costs(iou, scale).tolist(), strict=True))
    assert len(set(mapping)) == len(mapping) and len(set(mapping.values())) == len(mapping)  # one-to-one
    assert all((g - 1, p - 1) in costs for p, g in mapping.items())  # only real edges
    assert _flow_cost(mapping, costs, n_gt, scale) == _brute_force_min(n_gt, n_pred, costs, scale)


def test_matching_with_exact_ties_is_deterministic():
    ov = scoring.Overlaps(2, 2, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.full(4, 0.5, np.float32))
    first = scoring.optimal_matching(ov, 1_000_000)
    assert len(first) == 2
    assert all(scoring.optimal_matching(ov, 1_000_000) == first for _ in range(5))


# ---------------------------------------------------------------- Hausdorff
def _reference_hausdorff(a, b, vs, cap):
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return cap
    d = max(
        ndimage.distance_transform_edt(~b, sampling=vs)[a].max(),
        ndimage.distance_transform_edt(~a, sampling=vs)[b].max(),
    )
    return min(d, cap)


@pytest.mark.parametrize("seed", range(5))
def test_roi_hausdorff_equals_full_volume(seed):
    rng = np.random.default_rng(seed)
    vs = (3.0, 2.0, 1.5)
    t = np.zeros((16, 18, 20), np.uint16)
    p = np.zeros_like(t)
    for k in range(1, 6):
        lo = rng.integers(0, 12, 3)
        t[tuple(slice(a, a + int(rng.integers(1, 5))) for a in lo)] = k
        lo = rng.integers(0, 12, 3)
        p[tuple(slice(a, a + int(rng.integers(1, 5))) for a in lo)] = k
    ids = np.unique(t)[1:]
    cap = scoring.compute_max_distance(vs, t.shape)
    got = scoring.hausdorff_distances(t, p, ids, vs, cap)
    want = [_reference_hausdorff(t == i, p == i, np.asarray(vs), cap) for i in ids]
    np.testing.assert_allclose(got, np.asarray(want, np.float32), rtol=0, atol=0)


def test_normalisation_and_cap():
    assert scoring.compute_max_distance((2.0, 4.0, 8.0), (100, 10, 10)) == 20.0
    np.testing.assert_allclose(
        scoring.normalize_distances(np.array([0.0, 5.0, np.inf]), (3.0, 4.0, 0.0 + 1e-12)), [1.0, 1.01**-1.0, 0.0]
    )


def test_documented_vs_official_unmatched_prediction_ids():
    # GT 1 and 2; prediction matches GT 2 only; an unmatched prediction component gets id 1 (raster order),
    # colliding with GT 1. Documented: GT 1 is unmatched -> capped distance. Official code: compares GT 1
    # with that unrelated component.
    t = vol()
    t[6:8, 6:8, 6:8] = 1
    t[0:2, 5:7, 5:7] = 2
    p = vol()
    p[0, 0, 0] = 3  # first in raster order -> component 1, overlaps nothing
    p[0:2, 5:7, 5:7] = 4  # component 2, matches GT 2
    doc = scoring.score_instance(p, t, VS, constants=C, mode="documented")
    off = scoring.score_instance(p, t, VS, constants=C, mode="official")
    assert (doc["tp"], doc["fp"], doc["fn"]) == (off["tp"], off["fp"], off["fn"]) == (1, 1, 1)
    assert doc["hausdorff_norm_sum"] == pytest.approx(1.0 + nh(20.0) + nh(20.0), abs=1e-6)
    d_off = min(math.dist((0, 0, 0), (7 * 4, 7 * 4, 7 * 4)), 20.0)
    assert off["hausdorff_norm_sum"] == pytest.approx(1.0 + nh(d_off) + nh(20.0), abs=1e-6)


# ---------------------------------------------------------------- missing
def test_missing_scores():
    t = vol(dtype=np.uint8)
    t[0, 0, 0] = 1
    t[5, 5, 5] = 4
    sem = scoring.missing_score(t, instance=False)
    assert (sem["tp"], sem["fp"], sem["fn"], sem["status"]) == (0, 0, 1000, "missing")
    inst = scoring.missing_score(t, instance=True)
    assert (inst["tp"], inst["fp"], inst["fn"], inst["n_hausdorff"], inst["hausdorff_norm_sum"]) == (0, 0, 2, 2, 0.0)


def test_huge_sparse_ids_do_not_blow_up():
    t = vol(dtype=np.uint64)
    t[1:3, 1:3, 1:3] = 2**40
    t[6:8, 6:8, 6:8] = 5
    p = (t > 0).astype(np.uint8)
    r = scoring.score_instance(p, t, VS, constants=C)
    assert (r["tp"], r["fp"], r["fn"], r["hausdorff_norm_sum"]) == (2, 0, 0, 2.0)


def test_bounding_boxes_with_sparse_ids_and_no_background():
    lab = np.full((4, 4, 4), 10**7, np.int64)
    lab[0, 0, 0] = 3 * 10**7
    boxes = scoring._bboxes(lab, np.array([10**7, 3 * 10**7, 5]))
    assert boxes[3 * 10**7] == (slice(0, 1), slice(0, 1), slice(0, 1))
    assert boxes[10**7] == (slice(0, 4), slice(0, 4), slice(0, 4)) and 5 not in boxes
