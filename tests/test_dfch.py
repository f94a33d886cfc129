"""dfch: percentage similarity on hand-computed label sets, its loss terms, and real fits on
single-label digits and a multi-label list-file data set (digit mosaics)."""

import math

import lightning as L
import pytest
import torch

from hashlab.data import Digits, ListFile
from hashlab.data.mosaics import write_digit_mosaics
from hashlab.losses import (
    cosine_label_similarity,
    feature_consistency_loss,
    pairwise_likelihood_loss,
    similarity_kinds,
    weak_similarity_loss,
    weighted_pull_loss,
)
from hashlab.methods import DFCH
from tests.test_training import EpochLosses

NO_INDICES = torch.full((5,), -1)
LABELS = torch.tensor([
    [1, 1, 0, 0],  # a
    [1, 1, 0, 0],  # b: the same labels as a
    [1, 0, 0, 0],  # c: one of a's two labels
    [0, 0, 1, 1],  # d: nothing in common with a
    [1, 0, 1, 0],  # e: one label with a, one with d
], dtype=torch.uint8)


def test_percentage_similarity_strong_weak_and_dissimilar():
    s = cosine_label_similarity(LABELS, LABELS)
    half, root_half = 0.5, 1 / math.sqrt(2)
    expected = torch.tensor([
        [1, 1, root_half, 0, half],
        [1, 1, root_half, 0, half],
        [root_half, root_half, 1, 0, root_half],
        [0, 0, 0, 1, half],
        [half, half, root_half, half, 1],
    ])
    torch.testing.assert_close(s, expected)
    hard, weak = similarity_kinds(s)
    assert hard[0, 1] and hard[0, 3] and hard[2, 3]  # strong (a, b); dissimilar (a, d), (c, d)
    assert weak[0, 2] and weak[0, 4] and weak[3, 4]  # 1/sqrt(2), 1/2, 1/2
    assert not (hard | weak).diagonal().any() and not (hard & weak).any()
    assert int(hard.sum() + weak.sum()) == 5 * 4


def test_single_label_data_has_no_weak_pairs():
    labels = torch.eye(3, dtype=torch.uint8)[[0, 0, 1, 2, 1]]
    hard, weak = similarity_kinds(cosine_label_similarity(labels, labels))
    assert not weak.any() and hard.sum() == 20


def test_loss_terms_on_hand_made_codes():
    s = cosine_label_similarity(LABELS, LABELS)
    hard, weak = similarity_kinds(s)
    # codes that realise the similarity: a = b, d = -a, c and e in between
    codes = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1], [1, 1, -1, -1.]])
    pair = torch.tensor([[False, True], [True, False]])
    s_ae = s[[0, 4]][:, [0, 4]]  # s(a, e) = 1/2
    # IDHN's centred target 2s - 1 = 0 is met by <a, e> / 4 = 0; the cosine target 1/2 is not
    assert weak_similarity_loss(codes[[0, 4]], s_ae, pair, "centred") < 1e-12
    assert weak_similarity_loss(codes[[0, 4]], s_ae, pair, "cosine") == pytest.approx(0.25 * 2 / 2)
    # the weighted pull: half the force of an identical pair, and stronger the further apart the pair is
    assert weighted_pull_loss(codes[[0, 0]], s_ae, pair, 1.0) < weighted_pull_loss(codes[[0, 4]], s_ae, pair, 1.0)
    assert weighted_pull_loss(codes[[0, 4]], s_ae, pair, 1.0) == pytest.approx(0.5 * math.log(2))
    shuffled = codes[[3, 2, 1, 0, 4]]
    assert pairwise_likelihood_loss(codes, s, hard, 2.0) < pairwise_likelihood_loss(shuffled, s, hard, 2.0)
    # features with the codes' similarity structure are consistent; shuffled ones are not
    features = torch.cat([codes, codes], dim=1) + 3
    assert feature_consistency_loss(codes, features) < feature_consistency_loss(codes, features[[3, 2, 1, 0, 4]])


def test_ablation_switches_change_what_the_loss_sees():
    torch.manual_seed(0)
    codes, features = torch.randn(5, 16).tanh(), torch.randn(5, 32)
    full = DFCH(bits=16, backbone_pretrained=False)
    _, parts = full.hash_loss(codes, LABELS, features, NO_INDICES)
    assert parts["weak_pairs"] > 0 and parts["weak"] > 0
    assert float(parts["weak_pairs"]) == pytest.approx(6 / 10)  # a-c, a-e, b-c, b-e, c-e, d-e of the 10 distinct pairs
    plain = DFCH(bits=16, backbone_pretrained=False, weak_similarity=False)
    _, plain_parts = plain.hash_loss(codes, LABELS, features, NO_INDICES)
    assert plain_parts["weak_pairs"] == 0  # 0/1 similarity: every pair is hard
    regress = DFCH(bits=16, backbone_pretrained=False, weak_form="regress_centred")
    assert regress.hash_loss(codes, LABELS, features, NO_INDICES)[1]["weak"] != parts["weak"]
    bare = DFCH(bits=16, backbone_pretrained=False, weak_weight=0, consistency_weight=0, quantization_weight=0)
    total, bare_parts = bare.hash_loss(codes, LABELS, features, NO_INDICES)
    torch.testing.assert_close(total, bare_parts["likelihood"])


def test_dfch_fit_on_single_label_digits_lowers_the_loss_and_retrieves():
    torch.manual_seed(0)
    model = DFCH(bits=16, lr=0.2, head_hidden=256)
    data = Digits(batch_size=50)
    losses = EpochLosses()
    trainer = L.Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[losses], num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    assert losses.losses[-1] < 0.8 * losses.losses[0]
    trainer.test(model, datamodule=data, verbose=False)
    assert model.test_report.mean_average_precision() > 0.5


def test_dfch_finetune_sends_gradients_to_the_backbone():
    model = DFCH(bits=16, mode="finetune")
    data = Digits(image_size=32, batch_size=8)
    data.prepare()
    images, labels, _ = next(iter(data.loader(data.dataset("train", train=True), train=True)))
    loss, _ = model.training_loss(images, labels)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.stages[0].parameters())


@pytest.fixture(scope="module")
def mosaics(tmp_path_factory):
    return write_digit_mosaics(tmp_path_factory.mktemp("mosaics"), num_images=600, num_queries=100, num_train=300)


def test_dfch_trains_on_multi_label_list_files_without_changes(mosaics, tmp_path):
    data = ListFile(root=str(mosaics), family="small", image_size=32, batch_size=50)
    assert data.describe()["multi_label"]
    model = DFCH(bits=16, lr=0.2, head_hidden=256)
    losses = EpochLosses()
    trainer = L.Trainer(max_epochs=4, logger=False, enable_progress_bar=False, callbacks=[losses],
                        default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    assert float(trainer.callback_metrics["train/weak_pairs"]) > 0.05  # the weak term is in play
    assert losses.losses[-1] < losses.losses[0]
    trainer.test(model, datamodule=data, verbose=False)
    assert model.test_report.mean_average_precision() > 0.4
