"""The evaluation engine against brute-force references written straight from the definitions."""

import itertools

import numpy as np
import pytest
import torch

from hashlab.evaluation import (
    HashingRetrievalMetric,
    PackedCodes,
    evaluate_retrieval,
    mean_average_precision,
    pack_codes,
    tie_aware_mean_average_precision,
)


def brute_force_ap(q_code, db_codes, q_label, db_labels, topk):
    """Per-query AP by a stable argsort: precision at each relevant position inside the top K."""
    dist = (q_code[None, :] != db_codes).sum(1)
    order = np.argsort(dist, kind="stable")[:topk]
    relevant = (db_labels[order] @ q_label) > 0
    if not relevant.any():
        return 0.0
    positions = np.flatnonzero(relevant) + 1
    return float(np.mean(np.arange(1, len(positions) + 1) / positions))


def brute_force_map(q, db, ql, dbl, topk=None):
    k = len(db) if topk is None else topk
    return float(np.mean([brute_force_ap(q[i], db, ql[i], dbl, k) for i in range(len(q))]))


def random_problem(rng, nq, ndb, bits, classes, multi_label):
    # few bits relative to the database size: ties everywhere
    q = rng.choice([-1, 1], size=(nq, bits))
    db = rng.choice([-1, 1], size=(ndb, bits))
    if multi_label:
        ql = (rng.random((nq, classes)) < 0.25).astype(np.int64)
        dbl = (rng.random((ndb, classes)) < 0.25).astype(np.int64)
    else:
        ql = np.eye(classes, dtype=np.int64)[rng.integers(0, classes, nq)]
        dbl = np.eye(classes, dtype=np.int64)[rng.integers(0, classes, ndb)]
    return q, db, ql, dbl


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("bits,topk", [(4, None), (8, 50), (12, 7), (70, None), (33, 120)])
def test_map_equals_brute_force(multi_label, bits, topk):
    rng = np.random.default_rng(bits * 7 + int(multi_label))
    q, db, ql, dbl = random_problem(rng, 40, 300, bits, 6, multi_label)
    expected = brute_force_map(q, db, ql, dbl, topk)
    assert mean_average_precision(q, db, ql, dbl, topk=topk) == pytest.approx(expected, abs=1e-12)


def test_code_formats_agree():
    rng = np.random.default_rng(0)
    q, db, ql, dbl = random_problem(rng, 20, 100, 24, 5, False)
    reference = mean_average_precision(q, db, ql, dbl)
    assert mean_average_precision((q > 0).astype(np.uint8), (db > 0), ql, dbl) == reference
    assert mean_average_precision(torch.tensor(q, dtype=torch.float32), torch.tensor(db), torch.tensor(ql),
                                  torch.tensor(dbl)) == reference
    packed_q = PackedCodes(np.packbits(q > 0, axis=1), 24)
    assert mean_average_precision(packed_q, pack_codes(db), ql, dbl) == reference
    assert mean_average_precision(q, db, ql.argmax(1), dbl.argmax(1)) == reference
    np.testing.assert_array_equal(pack_codes(q).unpack(), q)


def test_a_zero_bit_is_rejected():
    codes = np.array([[1, -1, 0, 1]])
    with pytest.raises(ValueError, match="bit 2 of code 0 is exactly 0"):
        mean_average_precision(codes, codes, [[1]], [[1]])


def test_other_bad_inputs_are_named():
    with pytest.raises(ValueError, match="NaN"):
        pack_codes(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="16 bits"):
        mean_average_precision(np.ones((2, 8)), np.ones((2, 16)), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="database: 3 codes but 2 label rows"):
        mean_average_precision(np.ones((2, 8)), np.ones((3, 8)), [0, 1], [0, 1])


def test_query_without_relevant_items_counts_zero():
    q = np.array([[1, 1], [1, -1]])
    db = np.array([[1, 1], [-1, -1]])
    # query 0 (class 0) finds its item at rank 1; query 1 (class 2) has nothing relevant
    assert mean_average_precision(q, db, [0, 2], [0, 1]) == pytest.approx(0.5)


def tie_aware_brute_force(q_code, db_codes, q_label, db_labels):
    """Exact expectation: average the AP over every order consistent with the distances."""
    dist = (q_code[None, :] != db_codes).sum(1)
    groups = [np.flatnonzero(dist == d) for d in np.unique(dist)]
    aps = []
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        order = np.concatenate(perms)
        relevant = (db_labels[order] @ q_label) > 0
        positions = np.flatnonzero(relevant) + 1
        aps.append(np.mean(np.arange(1, len(positions) + 1) / positions) if len(positions) else 0.0)
    return float(np.mean(aps))


@pytest.mark.parametrize("seed", range(4))
def test_tie_aware_map_is_the_expectation_over_tie_orders(seed):
    rng = np.random.default_rng(seed)
    q, db, ql, dbl = random_problem(rng, 5, 7, 2, 3, multi_label=seed % 2 == 1)
    expected = np.mean([tie_aware_brute_force(q[i], db, ql[i], dbl) for i in range(len(q))])
    assert tie_aware_mean_average_precision(q, db, ql, dbl) == pytest.approx(expected, abs=1e-12)


def test_curves_against_brute_force():
    rng = np.random.default_rng(3)
    q, db, ql, dbl = random_problem(rng, 15, 200, 10, 4, True)
    report = evaluate_retrieval(q, db, ql, dbl, curve_ns=(1, 10, 50, 200, 1000))
    dist = (q[:, None, :] != db[None]).sum(-1)
    relevant = (ql @ dbl.T) > 0
    pr = report.pr_curve_by_radius()
    for radius in (0, 2, 5, 10):
        within = dist <= radius
        hits = (within & relevant).sum(1)
        precision = np.where(within.sum(1) > 0, hits / np.maximum(within.sum(1), 1), 0.0)
        total = relevant.sum(1)
        recall = np.where(total > 0, hits / np.maximum(total, 1), 0.0)
        assert pr["precision"][radius] == pytest.approx(precision.mean())
        assert pr["recall"][radius] == pytest.approx(recall.mean())
    assert report.precision_within_radius(2) == pytest.approx(pr["precision"][2])
    p_at_n = report.precision_at_n()
    assert list(p_at_n["n"]) == [1, 10, 50, 200]  # cut-offs beyond the database are clipped
    for j, n in enumerate(p_at_n["n"]):
        top = np.argsort(dist, axis=1, kind="stable")[:, :n]
        expected = np.take_along_axis(relevant, top, 1).sum(1) / n
        assert p_at_n["precision"][j] == pytest.approx(expected.mean())


def test_torchmetric_restores_dataset_order_and_drops_sampler_padding():
    rng = np.random.default_rng(5)
    q, db, ql, dbl = random_problem(rng, 12, 60, 8, 3, False)
    expected = mean_average_precision(q, db, ql, dbl)
    metric = HashingRetrievalMetric()
    # feed the database shuffled and with a repeated item, as a DistributedSampler's shards would be
    order = np.concatenate([rng.permutation(60), [3]])
    for chunk in np.array_split(order, 4):
        metric.update(torch.tensor(db[chunk], dtype=torch.float32), torch.tensor(dbl[chunk]),
                      torch.tensor(chunk), "database")
    metric.update(torch.tensor(q, dtype=torch.float32), torch.tensor(ql), torch.arange(12), "query")
    assert metric.compute().mean_average_precision() == expected


def test_graded_ndcg_matches_a_direct_computation():
    import math

    from hashlab.evaluation.graded import ndcg_at_k
    rng = np.random.default_rng(0)
    q, db = rng.choice([-1, 1], (7, 8)), rng.choice([-1, 1], (50, 8))
    q_labels, db_labels = rng.integers(0, 2, (7, 5)), rng.integers(0, 2, (50, 5))

    def direct(k):
        scores = []
        for i in range(len(q)):
            order = sorted(range(len(db)), key=lambda j: (int(8 - q[i] @ db[j]) // 2, j))[:k]
            rel = [int(q_labels[i] @ db_labels[j]) for j in range(len(db))]
            dcg = sum((2 ** rel[j] - 1) / math.log2(r + 2) for r, j in enumerate(order))
            ideal = sum((2 ** g - 1) / math.log2(t + 2) for t, g in enumerate(sorted(rel, reverse=True)[:k]))
            scores.append(dcg / ideal if ideal else 0.0)
        return float(np.mean(scores))

    for k in (1, 5, 50, 100):
        assert ndcg_at_k(q, db, q_labels, db_labels, k) == pytest.approx(direct(k), abs=1e-12)


@pytest.mark.parametrize("topk", [None, 100])
def test_the_one_word_kernel_gives_the_general_kernels_values_exactly(topk):
    """Codes of <= 64 bits and labels of <= 64 classes take the faster one-word kernel: every output equal."""
    from hashlab.evaluation.codes import pack_codes, pack_labels
    from hashlab.evaluation.kernel import one_word_kernel, retrieval_kernel
    rng = np.random.default_rng(3)
    q = pack_codes(rng.choice([-1, 1], size=(37, 48))).words()
    db = pack_codes(rng.choice([-1, 1], size=(501, 48))).words()
    ql = pack_labels((rng.random((37, 12)) < 0.2).astype(np.uint8), 12)
    dbl = pack_labels((rng.random((501, 12)) < 0.2).astype(np.uint8), 12)
    k = 501 if topk is None else topk
    ns = np.array([1, 10, 100, 501], dtype=np.int64)
    general = retrieval_kernel(q, db, ql, dbl, 48, k, ns)
    for chunks in (1, 3, 64):
        fast = one_word_kernel(q, db, ql, dbl, 48, k, ns, chunks)
        assert all(np.array_equal(a, b) for a, b in zip(general, fast, strict=True))
