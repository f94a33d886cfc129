"""The evaluation engine against brute-force references written straight from the definitions: the order-free
metrics against the average over every (or many random) orders of tied items, the stable-order figure against
a stable argsort."""

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
def test_stable_map_equals_a_stable_argsort(multi_label, bits, topk):
    rng = np.random.default_rng(bits * 7 + int(multi_label))
    q, db, ql, dbl = random_problem(rng, 40, 300, bits, 6, multi_label)
    expected = brute_force_map(q, db, ql, dbl, topk)
    assert mean_average_precision(q, db, ql, dbl, topk=topk, ties="database") == pytest.approx(expected, abs=1e-12)
    if topk is None:
        report = evaluate_retrieval(q, db, ql, dbl, stable=True)
        assert report.summary()["map_stable"] == pytest.approx(expected, abs=1e-12)


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


def ap_of_order(relevant_in_order, topk):
    top = relevant_in_order[:topk]
    positions = np.flatnonzero(top) + 1
    return float(np.mean(np.arange(1, len(positions) + 1) / positions)) if len(positions) else 0.0


def every_tie_order(q_code, db_codes):
    """Every ranking of the database consistent with the Hamming distances (all orders inside each tie)."""
    dist = (q_code[None, :] != db_codes).sum(1)
    groups = [np.flatnonzero(dist == d) for d in np.unique(dist)]
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        yield np.concatenate(perms)


@pytest.mark.parametrize("topk", [None, 1, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_map_is_the_exact_expectation_over_every_tie_order(seed, topk):
    """AP@K with K inside a tied bucket too: the hypergeometric sum against the average over every order."""
    rng = np.random.default_rng(seed)
    q, db, ql, dbl = random_problem(rng, 5, 7, 2, 3, multi_label=seed % 2 == 1)
    k = len(db) if topk is None else topk
    expected = np.mean([np.mean([ap_of_order((dbl[order] @ ql[i]) > 0, k) for order in every_tie_order(q[i], db)])
                        for i in range(len(q))])
    assert mean_average_precision(q, db, ql, dbl, topk=topk) == pytest.approx(expected, abs=1e-12)


def test_map_and_precision_equal_the_average_over_many_random_tie_orders():
    """A database of 60 items at 3 bits (ties of about 8 items): the closed forms against 20,000 random orders."""
    rng = np.random.default_rng(11)
    q, db, ql, dbl = random_problem(rng, 6, 60, 3, 3, multi_label=False)
    report = evaluate_retrieval(q, db, ql, dbl)
    dist = (q[:, None, :] != db[None]).sum(-1)
    relevant = (ql @ dbl.T) > 0
    orders = 20_000
    sums = {"all": 0.0, "at10": 0.0, "p5": 0.0}
    for _ in range(orders):
        shuffle = rng.random(dist.shape)
        ranking = np.lexsort((shuffle, dist), axis=1)  # distance first, ties in a random order
        rel = np.take_along_axis(relevant, ranking, 1)
        sums["all"] += np.mean([ap_of_order(r, 60) for r in rel])
        sums["at10"] += np.mean([ap_of_order(r, 10) for r in rel])
        sums["p5"] += rel[:, :5].mean()
    # the Monte Carlo mean is within a few standard errors (about 1e-3 here) of the exact expectation
    assert report.mean_average_precision() == pytest.approx(sums["all"] / orders, abs=3e-3)
    assert report.mean_average_precision(10) == pytest.approx(sums["at10"] / orders, abs=3e-3)
    assert report.precision_at_n((5,))["precision"][0] == pytest.approx(sums["p5"] / orders, abs=3e-3)


@pytest.mark.parametrize("multi_label", [False, True])
def test_every_metric_is_unchanged_when_the_database_and_the_queries_are_permuted(multi_label):
    rng = np.random.default_rng(21)
    q, db, ql, dbl = random_problem(rng, 50, 2000, 8, 5, multi_label)  # 8 bits, 2,000 items: large ties
    centres = rng.choice([-1, 1], size=(5, 8))
    for codes, labels in ((q, ql), (db, dbl)):  # codes near their first class's centre, as trained codes are
        codes[:] = np.where(rng.random(codes.shape) < 0.1, -1, 1) * centres[labels.argmax(1)]
    db_order, q_order = rng.permutation(len(db)), rng.permutation(len(q))
    before = evaluate_retrieval(q, db, ql, dbl)
    after = evaluate_retrieval(q[q_order], db[db_order], ql[q_order], dbl[db_order])
    for topk in (None, 1, 10, 100, 1000):
        assert after.mean_average_precision(topk) == pytest.approx(before.mean_average_precision(topk), abs=1e-9)
    for curve in ("precision_at_n", "pr_curve_by_radius"):
        for key, values in getattr(before, curve)().items():
            np.testing.assert_allclose(getattr(after, curve)()[key], values, rtol=0, atol=1e-9)
    assert after.precision_within_radius(2) == pytest.approx(before.precision_within_radius(2), abs=1e-9)
    # the stable-order figure is what does depend on the order: a database grouped by class, as data sets are
    # stored, against the same database shuffled
    grouped = np.lexsort(dbl.T[::-1])
    stable = [evaluate_retrieval(q, db[o], ql, dbl[o], stable=True).stable_mean_average_precision()
              for o in (grouped, db_order)]
    assert abs(stable[0] - stable[1]) > 1e-3


def test_curves_against_brute_force():
    rng = np.random.default_rng(3)
    q, db, ql, dbl = random_problem(rng, 15, 200, 10, 4, True)
    report = evaluate_retrieval(q, db, ql, dbl)
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
    p_at_n = report.precision_at_n((1, 10, 50, 200, 1000))
    assert list(p_at_n["n"]) == [1, 10, 50, 200]  # cut-offs beyond the database are clipped
    for j, n in enumerate(p_at_n["n"]):
        # expected relevant items in the top N: every bucket wholly inside, and the cut bucket's share
        expected = []
        for i in range(len(q)):
            cut = np.sort(dist[i])[n - 1]
            inside = dist[i] < cut
            taken = n - inside.sum()
            at_cut = dist[i] == cut
            expected.append((relevant[i][inside].sum() + taken * relevant[i][at_cut].mean()) / n)
        assert p_at_n["precision"][j] == pytest.approx(np.mean(expected))


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
    metric.stable = True
    report = metric.compute()
    assert report.mean_average_precision() == expected
    assert report.stable_mean_average_precision() == mean_average_precision(q, db, ql, dbl, ties="database")
    # a diverged model's NaN codes would be scored as all -1 by their sign: refused, said
    codes = torch.tensor(q, dtype=torch.float32)
    codes[2, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="1 of 12 query codes are not finite"):
        HashingRetrievalMetric().update(codes, torch.tensor(ql), torch.arange(12), "query")


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
def test_the_one_word_path_gives_the_general_paths_values_exactly(topk):
    """Codes of <= 64 bits and labels of <= 64 classes take the one-word loop; the same codes with an empty
    second label word take the general one: every output equal."""
    from hashlab.evaluation.codes import pack_codes, pack_labels
    from hashlab.evaluation.kernel import histogram_kernel, stable_kernel
    rng = np.random.default_rng(3)
    q = pack_codes(rng.choice([-1, 1], size=(37, 48))).words()
    db = pack_codes(rng.choice([-1, 1], size=(501, 48))).words()
    ql = pack_labels((rng.random((37, 12)) < 0.2).astype(np.uint8), 12)
    dbl = pack_labels((rng.random((501, 12)) < 0.2).astype(np.uint8), 12)
    wide_ql, wide_dbl = (np.concatenate([x, np.zeros_like(x)], axis=1) for x in (ql, dbl))
    k = 501 if topk is None else topk
    for chunks in (1, 3, 64):
        for one, general in ((histogram_kernel(q, db, ql, dbl, 48, chunks),
                              histogram_kernel(q, db, wide_ql, wide_dbl, 48, chunks)),
                             ((stable_kernel(q, db, ql, dbl, 48, k, chunks),),
                              (stable_kernel(q, db, wide_ql, wide_dbl, 48, k, chunks),))):
            assert all(np.array_equal(a, b) for a, b in zip(one, general, strict=True))


def test_seen_and_unseen_parts_leave_the_validation_items_out():
    """map_seen against the training images alone, map_unseen against the items no model used (the validation
    items, which model selection looked at, belong to neither); no unseen part, no such metric."""
    from hashlab.evaluation.scores import SEEN, UNSEEN, VALIDATION, score_codes
    rng = np.random.default_rng(8)
    q, db, ql, dbl = random_problem(rng, 20, 90, 12, 4, False)
    part = np.array([SEEN] * 30 + [VALIDATION] * 10 + [UNSEEN] * 50)
    metrics, _ = score_codes(q, db, ql, dbl, part)
    assert metrics["map_seen"] == pytest.approx(mean_average_precision(q, db[:30], ql, dbl[:30]), abs=1e-12)
    assert metrics["map_unseen"] == pytest.approx(mean_average_precision(q, db[40:], ql, dbl[40:]), abs=1e-12)
    held_out = np.array([SEEN] * 80 + [VALIDATION] * 10)  # digits, cifar10-2: train and held-out validation
    assert "map_unseen" not in score_codes(q, db, ql, dbl, held_out)[0]


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_second_evaluator_agrees_with_the_engine(multi_label):
    """hashlab.evaluation.crosscheck shares no code with the engine (it ranks every item: a stable argsort, and
    torchmetrics' AP over random tie orders): on a problem with large ties both figures agree, and a wrong figure
    would be many standard errors away."""
    from hashlab.evaluation.crosscheck import cross_check
    q, db, ql, dbl = random_problem(np.random.default_rng(3), 150, 800, 6, 5, multi_label)
    found = cross_check(q, db, ql, dbl, draws=6)
    assert found.map_stable == pytest.approx(mean_average_precision(q, db, ql, dbl, ties="database"), abs=1e-9)
    expected = mean_average_precision(q, db, ql, dbl)
    assert abs(found.map_random - expected) <= 4 * found.map_random_se
    assert 0 < found.map_random_se < 0.005  # the jitter does reorder ties, and the estimate is sharp enough to catch
    if not multi_label:  # class ids are read as labels too
        again = cross_check(q, db, ql.argmax(1), dbl.argmax(1), draws=6)
        assert (again.map_stable, again.map_random) == (found.map_stable, found.map_random)
