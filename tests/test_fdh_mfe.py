"""fdh_mfe: stage taps on every registered backbone, the background mask on a real photo, the
proxy and triplet losses, ablation switches, a real fit with its record, and `hashlab explain`."""

import json

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skimage_data

from hashlab.backbones import create_backbone
from hashlab.backbones.taps import StageGrids, default_taps, stage_shapes
from hashlab.cli import main
from hashlab.data import Digits
from hashlab.losses import proxy_loss, proxy_separation, triplet_loss
from hashlab.methods import FDHMFE
from hashlab.runs.fit import resolve_run_dir, run_fit
from tests.test_training import EpochLosses

DEMO = ["experiments/methods/fdh_mfe.yaml", "--profile", "demo"]


@pytest.mark.parametrize("name, taps", [("efficientnet_lite0", [3, 5, 8]), ("resnet18", [2, 3, 4]),
                                        ("resnet50", [2, 3, 4])])
def test_taps_are_the_last_stage_at_strides_8_16_32(name, taps):
    backbone = create_backbone(name, pretrained=False)
    assert default_taps(backbone) == taps
    sizes = [stage_shapes(backbone)[i][1] for i in taps]
    assert sizes == [28, 14, 7]  # of a 224 px input
    grids = StageGrids(backbone, taps, grid=4)
    out = grids(torch.rand(2, 3, 96, 96))
    assert out.shape == (2, sum(grids.level_channels), 4, 4)
    assert [level.shape[1] for level in grids.split_levels(out)] == grids.level_channels


def test_background_mask_has_the_maps_shape_and_keeps_the_object():
    """A real photo pasted into the top-left quarter of a flat grey canvas: the mask (before any
    training, from the pretrained activations) keeps the photo's regions and suppresses the rest."""
    model = FDHMFE(bits=16, grid=4, num_classes=10).eval()
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    canvas = torch.full((1, 3, 128, 128), 0.5)
    canvas[:, :, :64, :64] = torch.nn.functional.interpolate(cat, size=(64, 64), mode="bilinear", antialias=True)
    with torch.no_grad():
        mask = model.background_mask(canvas)[0]
    assert mask.shape == (4, 4)  # the deep map of a 128 px input is 4 x 4
    assert 0 <= float(mask.min()) and float(mask.max()) <= 1 and float(mask.std()) > 0.05  # not constant
    assert float(mask[:2, :2].mean()) > float(mask[2:, 2:].mean()) + 0.2


def test_proxy_loss_pulls_codes_to_their_class_centre():
    proxies = torch.tensor([[1.0, 1, 1, 1], [-1, -1, 1, 1], [1, -1, -1, -1]])  # Hamming 2, 3, 3 of 4
    labels = torch.eye(3)[[0, 1, 2]]
    assert proxy_loss(proxies.clone(), proxies, labels) < proxy_loss(proxies[[1, 2, 0]], proxies, labels)
    multi = torch.tensor([[1.0, 1, 0], [0, 1, 1], [1, 0, 0]])
    assert proxy_loss(proxies + proxies[[1, 2, 0]], proxies, multi, multi_label=True).isfinite()
    # multi-label data: a sigmoid per class even for a batch whose images happen to carry one label each
    cosine = F.normalize(proxies, dim=1) @ F.normalize(proxies, dim=1).T
    sigmoid = F.binary_cross_entropy_with_logits(8.0 * (cosine - 0.1 * (2 * labels - 1)), labels)
    assert proxy_loss(proxies, proxies, labels, multi_label=True) == pytest.approx(float(sigmoid))
    assert proxy_loss(proxies, proxies, labels) != pytest.approx(float(sigmoid))
    separation = proxy_separation(proxies)
    assert separation["proxy_hamming_min"] == 0.5 and separation["proxy_hamming_mean"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("mining", ["batch_hard", "semihard", "all"])
def test_triplet_mining_choices(mining):
    labels = torch.eye(2)[[0, 0, 1, 1]]
    separated = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [-1, -1, -1, -1], [-1, -1, -1, -1]])
    assert triplet_loss(separated, labels, margin=0.25, mining=mining) == 0
    mixed = torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1], [1, 1, 1, -1], [-1, -1, -1, 1]])
    assert triplet_loss(mixed, labels, margin=0.25, mining=mining) > 0
    if mining == "batch_hard":  # the hardest triplet of anchor 0: positive at distance 1, negative at 1/4
        assert float(triplet_loss(mixed, labels, 0.25, mining)) == pytest.approx(1.0)


def graph_signature(model: FDHMFE, grids: torch.Tensor, labels: torch.Tensor) -> tuple[int, frozenset]:
    """Size of the autograd graph of the loss, and which parameters it reaches."""
    model.proxies = torch.nn.Parameter(torch.randn(labels.shape[1], model.bits))
    loss, _ = model.hash_loss(model.head(grids), labels, grids, torch.arange(len(grids)))
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    loss.backward()
    reached = frozenset(n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0)
    return len(seen), reached


def test_every_ablation_switch_changes_the_computation():
    torch.manual_seed(0)
    grids = torch.rand(8, 40 + 112 + 1280, 2, 2)
    labels = torch.eye(4)[torch.arange(8) % 4]
    switches = {"use_gnn": False, "use_shallow": False, "suppress_background": False, "proxy_weight": 0.0,
                "triplet_weight": 0.0}
    base = dict(bits=16, grid=2, backbone_pretrained=False)
    full = graph_signature(FDHMFE(**base), grids, labels)
    for name, value in switches.items():
        torch.manual_seed(0)
        ablated = graph_signature(FDHMFE(**base, **{name: value}), grids, labels)
        assert ablated != full, f"{name}={value} did not change the computation"


def test_fdh_mfe_fit_lowers_the_loss_and_records_balance_and_proxies(tmp_path):
    torch.manual_seed(0)
    model = FDHMFE(bits=16, grid=2, optimizer="adamw", lr=1e-3, weight_decay=1e-4)
    losses = EpochLosses()
    trainer = L.Trainer(max_epochs=4, logger=False, enable_progress_bar=False, callbacks=[losses],
                        default_root_dir=tmp_path)
    trainer.fit(model, datamodule=Digits(batch_size=64))
    assert losses.losses[-1] < 0.8 * losses.losses[0]
    assert model.hparams.num_classes == 10 and model.proxies.shape == (10, 16)


def test_hashlab_fit_and_explain(tmp_path):
    args = ["--config", *DEMO, "--trainer.max_epochs=3", f"--runs_dir={tmp_path}"]
    record = json.loads(run_fit(args).read_text())
    metrics = record["metrics"]
    assert metrics["map"] > 0.5 and 0 <= metrics["bit_balance"] < 0.5
    assert 0 < metrics["proxy_hamming_mean"] <= 1 and metrics["proxy_hamming_min"] <= metrics["proxy_hamming_mean"]
    checkpoint = resolve_run_dir(args) / record["evaluated_checkpoint"]["checkpoint"]
    images = []
    for i, scan in enumerate(Digits().load_source().items[:3]):
        images.append(tmp_path / f"digit{i}.png")
        Image.fromarray(scan).resize((64, 64)).save(images[-1])
    out = tmp_path / "explain" / "masks.png"
    main(["explain", "fdh_mfe", "--checkpoint", str(checkpoint), "--images", *map(str, images), "--out", str(out)])
    picture = np.asarray(Image.open(out))
    assert picture.shape[1] > picture.shape[0] > 200  # a grid of three columns, images above masks
    with pytest.raises(SystemExit, match="nothing to explain"):
        main(["explain", "dfch", "--checkpoint", str(checkpoint), "--images", str(images[0])])


def test_class_balanced_batches_give_every_anchor_a_triplet():
    """P x K batches on CUB-like data (200 classes, 30 images each, batch 32): every anchor has a
    positive; shuffled batches leave most anchors without one."""
    from hashlab.data.items import ClassBalancedBatches
    from hashlab.losses import triplet_coverage
    labels = np.eye(200, dtype=np.uint8)[np.repeat(np.arange(200), 30)]
    sampler = ClassBalancedBatches(labels, batch_size=32, per_class=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(labels) // 32 and all(len(b) == 32 for b in batches)
    assert all(len(np.unique(labels[b].argmax(1))) == 8 for b in batches)  # 8 classes x 4 images
    balanced = [float(triplet_coverage(torch.from_numpy(labels[b]))) for b in batches]
    shuffled = [float(triplet_coverage(torch.from_numpy(labels[b])))
                for b in np.array_split(np.random.default_rng(0).permutation(len(labels)), len(batches))]
    assert min(balanced) == 1.0 and np.mean(shuffled) < 0.2
    assert list(sampler) != batches  # a new draw every epoch


def test_fdh_mfe_asks_for_class_balanced_batches_on_fine_grained_data(tmp_path):
    from hashlab.data import CUB200, Digits
    from hashlab.methods import FDHMFE
    from tests.test_datasets import write_cub200
    write_cub200(tmp_path)
    cub, digits = CUB200(root=str(tmp_path), image_size=32), Digits()
    for data in (cub, digits):
        data.method_wants_class_balanced = FDHMFE(bits=8, grid=2, backbone_pretrained=False,
                                                  num_classes=4).wants_class_balanced_batches
    assert cub.batch_kind == "class_balanced" and digits.batch_kind == "random"
    assert CUB200(root=str(tmp_path), batches="random").batch_kind == "random"
    assert not FDHMFE(bits=8, grid=2, backbone_pretrained=False, num_classes=4,
                      triplet_weight=0).wants_class_balanced_batches
