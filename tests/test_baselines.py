"""The baselines every hashing table has: each loss on a case computed by hand, each method fitted for
real on the embedded digits (well above chance: 10 classes, chance mAP about 0.1)."""

import json
import math
from pathlib import Path

import pytest
import torch

from hashlab.losses import contrastive_hamming_loss, label_overlap_similarity
from hashlab.losses.baselines import (
    GreedySign,
    abs_one_loss,
    cauchy_pairwise_loss,
    center_loss,
    continuation_beta,
    hash_centers,
    multi_label_centers,
    weighted_pairwise_cross_entropy,
)
from hashlab.methods import METHODS
from hashlab.runs.fit import run_fit

ROOT = Path(__file__).resolve().parents[1]
SHALLOW = [name for name, cls in METHODS.items() if cls.kind == "closed-form"]
DEEP = [name for name, cls in METHODS.items() if cls.kind == "deep" and not cls.seed_method]


def test_dsh_is_a_contrastive_loss_with_margin_two_bits():
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    labels = torch.tensor([[1, 0], [0, 1], [1, 0]])
    # pairs (0,1): dissimilar, |u-v|^2 = 4 >= m = 2 * 2: no loss; (0,2): similar, distance 0; (1,2): dissimilar, 4
    assert float(contrastive_hamming_loss(u, label_overlap_similarity(labels, labels), 1.0)) == 0.0
    v = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # dissimilar, |u-v|^2 = 1 < 4: hinge (4 - 1) / 4 = 0.75 bits
    loss = contrastive_hamming_loss(v, torch.zeros(2, 2), 1.0)
    assert float(loss) == pytest.approx(0.75 / 2)  # one pair, divided by bits
    assert float(abs_one_loss(torch.tensor([[0.5, -2.0]]))) == pytest.approx((0.5 + 1.0) / 2)


def test_hashnet_weights_similar_and_dissimilar_pairs_alike():
    codes = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    similarity = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    alpha = 2.0
    # off-diagonal: 2 similar pairs (theta 2), 4 dissimilar (theta 0); weights 6/2 and 6/4
    similar = math.log1p(math.exp(2.0)) - 2.0
    dissimilar = math.log(2.0)
    expected = (2 * 3 * similar + 4 * 1.5 * dissimilar) / 6
    assert float(weighted_pairwise_cross_entropy(codes, similarity, alpha)) == pytest.approx(expected, rel=1e-5)
    assert continuation_beta(0) == 1.0 and continuation_beta(600) == pytest.approx(2.0)


def test_dch_cauchy_loss_by_hand():
    codes = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]])
    # cos = 0: d = 4 / 2 * (1 - 0) = 2; dissimilar pair: log(1 + gamma / d) with gamma = 2 -> log 2
    loss = cauchy_pairwise_loss(codes, torch.zeros(2, 2), gamma=2.0)
    assert float(loss) == pytest.approx(math.log(2.0), rel=1e-4)


def test_csq_centres_are_far_apart_and_combine_for_multi_label_items():
    centres = hash_centers(10, 16)
    distances = (16 - centres @ centres.T) / 2
    off = ~torch.eye(10, dtype=torch.bool)
    assert distances[off].min() >= 8  # Hadamard rows and negations: bits / 2 or bits apart
    odd = hash_centers(10, 12)  # not a power of two: Bernoulli centres
    assert set(odd.unique().tolist()) == {-1.0, 1.0}
    combined = multi_label_centers(torch.tensor([[1, 1, 0]]), torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]))
    assert combined.tolist() == [[1.0, 1.0]]  # (2, 0): the tie goes to +1
    assert float(center_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, -1.0]]))) < 1e-4


def test_greedy_sign_passes_the_gradient_straight_through():
    h = torch.tensor([0.3, -2.0], requires_grad=True)
    b = GreedySign.apply(h)
    assert b.tolist() == [1.0, -1.0]
    (b * torch.tensor([2.0, 3.0])).sum().backward()
    assert h.grad.tolist() == [2.0, 3.0]


@pytest.mark.parametrize("name", SHALLOW + DEEP)
def test_every_baseline_fits_digits_well_above_chance(name, tmp_path):
    args = ["--config", f"experiments/methods/{name}.yaml", "--profile", "demo", f"--runs_dir={tmp_path}", "--model.init_args.bits=16"]
    if name in DEEP:
        args.append("--trainer.max_epochs=8")
    record = json.loads(run_fit(args).read_text())
    floor = {"lsh": 0.25, "itq": 0.3}.get(name, 0.5)  # unsupervised codes sit lower; chance is about 0.1
    assert record["method"] == name and record["metrics"]["map"] > floor, record["metrics"]["map"]
    assert record["epochs"] == (0 if name in SHALLOW else 8)


@pytest.mark.parametrize("name", SHALLOW + DEEP)
def test_every_baseline_has_its_three_profiles_and_doc(name):
    from hashlab.configs import method_profiles
    assert {"paper", "cpu", "demo"} <= set(method_profiles(ROOT / "experiments" / "methods" / f"{name}.yaml"))
    assert (ROOT / "docs" / "methods" / f"{name}.md").exists()
    assert len((ROOT / "hashlab" / "methods" / f"{name}.py").read_text().splitlines()) < 100


def test_dpsh_quantization_weight_follows_the_official_normalisation():
    """The official DPSH code divides both sums by num_train x batch: in mean form the quantization weight
    is eta x bits / num_train (0.024 at 12 bits, 0.096 at 48 on cifar10-1's 5,000 training images)."""
    from hashlab.methods import DPSH
    for bits, weight in ((12, 0.024), (48, 0.096)):
        model = DPSH(bits=bits)
        model.num_train = 5000
        assert model.quantization_weight() == pytest.approx(weight)


def test_sdh_b_step_sweeps_from_zero_to_a_fixed_point():
    """The public SDH code's B-step: B from zero, bit-by-bit sweeps until one changes nothing (at most 10)."""
    from hashlab.methods import SDH
    model = SDH(bits=12, mode="frozen")
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(12, 300, generator=generator, dtype=torch.float64)
    w = torch.randn(12, 10, generator=generator, dtype=torch.float64)
    b = model.discrete_sweeps(q, w, 10)
    assert set(b.unique().tolist()) == {-1.0, 1.0} and model._last_sweeps < 10
    again = b.clone()
    for k in range(12):  # one more sweep from the result changes no bit
        rest = [j for j in range(12) if j != k]
        again[k] = torch.where(q[k] - again[rest].T @ (w[rest] @ w[k]) >= 0, 1.0, -1.0).double()
    assert torch.equal(again, b)
