"""Real Lightning fits on real data: the digits set, frozen and fine-tuned EfficientNet-Lite0."""

import json
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from hashlab.backbones.taps import StageGrids, default_taps
from hashlab.data import Digits
from hashlab.io import write_json_atomic
from hashlab.methods import DPSHGoogLeNet
from hashlab.methods.base import NonFiniteLossError
from hashlab.runs.fit import resolve_run_dir, run_fit

DEMO = ["experiments/methods/dpsh_googlenet.yaml", "--profile", "demo"]
ROOT = Path(__file__).resolve().parents[1]


class EpochLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def test_frozen_fit_lowers_the_loss_and_retrieves():
    torch.manual_seed(0)
    # the demo's measured choices (the tanh bound learns slower: docs/methods/dpsh_googlenet.md)
    model = DPSHGoogLeNet(bits=16, lr=0.001, optimizer="adam", bounded=False, uniformity_weight=0.1,
                          quantization_weight=0.1)
    data = Digits(batch_size=50)
    losses = EpochLosses()
    trainer = L.Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[losses])
    trainer.fit(model, datamodule=data)
    assert losses.losses[-1] < 0.7 * losses.losses[0]
    trainer.test(model, datamodule=data, verbose=False)
    assert model.test_report.mean_average_precision() > 0.5  # chance is about 0.1


def test_finetune_mode_trains_the_backbone():
    model = DPSHGoogLeNet(bits=16, mode="finetune")
    data = Digits(image_size=32, batch_size=8)
    data.prepare()
    images, labels, _ = next(iter(data.loader(data.dataset("train", train=True), train=True)))
    loss, _ = model.training_loss(images, labels)
    loss.backward()
    grads = [p.grad for p in model.backbone.stages[0].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_bad_bits_and_nan_loss_get_clear_errors():
    with pytest.raises(ValueError, match="model.bits = 2"):
        DPSHGoogLeNet(bits=2)
    model = DPSHGoogLeNet(bits=8)
    batch = (torch.full((4, 1280), float("nan")), torch.eye(4, dtype=torch.uint8), torch.arange(4))
    with pytest.raises(NonFiniteLossError, match="Lower model.lr"):
        model.training_step(batch, 0)


def test_hashlab_fit_writes_a_record_and_does_not_rerun_it(tmp_path, capsys):
    args = ["--config", *DEMO, "--trainer.max_epochs=2", f"--runs_dir={tmp_path}", "--model.bits=16"]
    path = run_fit(args)
    assert path == resolve_run_dir(args) / "record.json"
    record = json.loads(path.read_text())
    for key in ("method", "dataset", "protocol", "backbone", "mode", "bits", "seed", "metrics", "timings",
                "config", "environment", "split"):
        assert key in record
    assert record["bits"] == 16 and record["method"] == "dpsh_googlenet" and record["epochs"] == 2
    assert set(record["metrics"]) >= {"map", "map_at_1000", "precision_h2", "map_stable"}
    assert record["evaluation"]["version"] == 2
    # digits: the database is the training set and the held-out validation items, so it has no unseen part
    assert "map_unseen" not in record["metrics"] and "map_seen" not in record["metrics"]
    # `hashlab rescore` recomputes the same numbers from the saved codes alone (the codes say what was trained on)
    from hashlab.runs.rescore import rescore_record
    assert rescore_record(path) == record["metrics"]
    assert json.loads(path.read_text())["curves"] == record["curves"]
    from hashlab.cli import main
    capsys.readouterr()
    main(["rescore", str(tmp_path)])  # says whether anything moved
    assert capsys.readouterr().out.strip().endswith("1 records under " + str(tmp_path) + ": 0 changed mAP@all "
                                                     "(by more than 0.00005), 1 the same")
    # a second evaluator, sharing no code with the engine, agrees with the record; a record whose figure does not
    # come from its codes is caught and named
    main(["rescore", "--check", str(tmp_path)])
    assert "**1 of 1 records agree**" in capsys.readouterr().out
    tampered = json.loads(path.read_text())
    tampered["metrics"]["map"] += 0.01
    path.write_text(json.dumps(tampered))
    with pytest.raises(SystemExit, match="some records do not agree with their codes"):
        main(["rescore", "--check", str(tmp_path), "--out", str(tmp_path / "check.md")])
    assert "| **no** |" in (tmp_path / "check.md").read_text() and str(path.parent) in capsys.readouterr().out
    write_json_atomic(path, record)
    assert record["environment"]["packages"]["torch"]
    assert record["environment"]["accelerator"] == ("cpu" if not torch.cuda.is_available() else
                                                    torch.cuda.get_device_name(0))
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left nothing behind
    stamp = path.stat().st_mtime_ns
    assert run_fit(args) == path and path.stat().st_mtime_ns == stamp
    # a changed config is a different cell
    assert resolve_run_dir([*args, "--model.init_args.margin=0.3"]) != resolve_run_dir(args)


def test_the_checkpoint_is_chosen_on_validation_never_on_queries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative runs_dir, as `make reproduce` uses
    args = ["--config", str(ROOT / DEMO[0]), *DEMO[1:], "--trainer.max_epochs=3", "--runs_dir=runs", "--model.bits=16"]
    record = json.loads(run_fit(args).read_text())
    chosen, history = record["evaluated_checkpoint"], record["val_map_by_epoch"]
    assert chosen["selection"].startswith("best validation mAP") and len(history) == 3
    assert chosen["val_map"] == max(history) and history[chosen["epoch"]] == max(history)
    # the file Lightning tested is the one the record names: saved at that epoch, right after that validation
    tested = torch.load(resolve_run_dir(args) / chosen["checkpoint"], weights_only=False)
    assert tested["epoch"] == chosen["epoch"] and tuple(tested["val_history"][-1]) == (chosen["epoch"], max(history))
    assert record["split"]["validation"] == 149 and record["split"]["split_file"].endswith(".json")
    # without a validation set there is nothing to select on: the last epoch is evaluated, and says so
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = json.loads(run_fit([*args, "--data.init_args.val_fraction=0"]).read_text())
    assert record["evaluated_checkpoint"]["selection"] == "last epoch" and record["val_map_by_epoch"] == []
    # no validation loaders is what the user asked for, not something to warn about (Lightning does, for [])
    assert not [w for w in caught if "across ranks is zero" in str(w.message)], [str(w.message) for w in caught]


def test_partial_mode_caches_early_stages_and_trains_only_the_late_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    args = ["--config", *DEMO, "--trainer.max_epochs=2", f"--runs_dir={tmp_path}", "--model.bits=16",
            "--model.init_args.mode=partial", "--model.init_args.frozen_stages=7", "--data.image_size=64"]
    record = json.loads(run_fit(args).read_text())
    assert record["mode"] == "partial" and record["metrics"]["map"] > 0.3
    assert "stages0-6" in record["feature_cache"]["path"]  # the cache holds stage-6 maps, not pooled vectors
    trained = torch.load(resolve_run_dir(args) / record["evaluated_checkpoint"]["checkpoint"], weights_only=False)
    fresh = DPSHGoogLeNet(bits=16).backbone.state_dict()
    changed = {k.removeprefix("backbone.") for k, v in trained["state_dict"].items()
               if k.startswith("backbone.") and "running" not in k and "num_batches" not in k
               and not torch.equal(v, fresh[k.removeprefix("backbone.")])}
    assert changed and all(k.startswith(("stages.7.", "stages.8.")) for k in changed), sorted(changed)[:5]


@pytest.mark.parametrize("method", ["FDHMFE", "AttributeHash"])
def test_partial_mode_of_a_multi_level_method_gives_its_stage_grids(method):
    """Taps before the cut are cached as grids, taps after it are computed by the trained stages:
    together exactly what the method's own extractor gives from the image."""
    import hashlab.methods as methods
    torch.manual_seed(0)
    model = getattr(methods, method)(bits=16, mode="partial", frozen_stages=5, grid=4).eval()
    assert model.extractor.cache_name == "efficientnet_lite0-stages0-4-taps3.5.8-grid4"
    images = torch.rand(2, 3, 128, 128)
    # exact in the reference's own memory layout; partial mode's channels-last convolutions sum in another order
    model.late_stages.memory_format = torch.contiguous_format
    with torch.no_grad():
        cached = model.extractor(images)
        reference = StageGrids(model.backbone, default_taps(model.backbone), 4)(images)
        torch.testing.assert_close(model.late_stages(cached), reference)
        torch.testing.assert_close(model.encode_images(images), model(cached))
        model.late_stages.memory_format = torch.channels_last
        torch.testing.assert_close(model.late_stages(cached), reference, atol=1e-4, rtol=1e-3)
    trained = {id(p) for p in model.late_stages.parameters()}
    assert trained == {id(p) for stage in model.backbone.stages[5:] for p in stage.parameters()}


def test_dpsh_googlenet_codes_are_bounded_and_its_losses_summed():
    """The patent constrains the relaxed codes to [-1, +1]^q and sums its three losses."""
    model = DPSHGoogLeNet(bits=16, backbone_pretrained=False)
    codes = model(torch.randn(64, 1280) * 100)
    assert codes.abs().max() <= 1
    assert model.uniformity_weight == model.quantization_weight == 0.01  # DSH's alpha
    labels = torch.eye(4)[torch.arange(8) % 4]
    total, parts = model.hash_loss(codes[:8], labels, None, None)
    torch.testing.assert_close(total, parts["pairwise"] + 0.01 * (parts["uniformity"] + parts["quantization"]))
    assert DPSHGoogLeNet(bits=16, backbone_pretrained=False, bounded=False)(torch.randn(64, 1280) * 100).abs().max() > 1


def test_dpsh_googlenet_loss_has_dsh_scale():
    """Written out pair by pair as DSH states its loss: 1/2 |u - v|^2 for a similar pair, 1/2 max(0, m - |u - v|^2)
    for a dissimilar one (m = 4 t: t is in Hamming bits), plus alpha times each image's regulariser summed over its
    bits, for both images of the pair; averaged over the pairs."""
    torch.manual_seed(0)
    bits, alpha = 12, 0.05
    model = DPSHGoogLeNet(bits=bits, backbone_pretrained=False, uniformity_weight=0, quantization_weight=alpha)
    codes = torch.randn(6, bits)
    labels = torch.eye(3)[torch.tensor([0, 0, 1, 1, 2, 0])]
    margin = 4 * model.margin
    quantization = (codes - codes.sign()).pow(2).sum(1)
    pairs = []
    for i in range(6):
        for j in range(i + 1, 6):
            squared = (codes[i] - codes[j]).pow(2).sum()
            similar = bool((labels[i] * labels[j]).sum() > 0)
            pair = squared / 2 if similar else torch.clamp(margin - squared, min=0) / 2
            pairs.append(pair + alpha * (quantization[i] + quantization[j]))
    total, _ = model.hash_loss(codes, labels, None, None)
    torch.testing.assert_close(total, torch.stack(pairs).mean())


def test_partial_mode_checks_the_cut():
    with pytest.raises(ValueError, match="frozen_stages = 9"):
        DPSHGoogLeNet(bits=16, mode="partial", frozen_stages=9)


def test_validation_every_k_epochs_and_always_after_the_last(tmp_path):
    args = ["--config", *DEMO, "--trainer.max_epochs=7", f"--runs_dir={tmp_path}", "--model.bits=16",
            "--model.init_args.validate_every=3"]
    record = json.loads(run_fit(args).read_text())
    epochs = [epoch for epoch, _ in torch.load(resolve_run_dir(args) / "checkpoints" / "last.ckpt",
                                                weights_only=False)["val_history"]]
    assert epochs == [2, 5, 6] and len(record["val_map_by_epoch"]) == 3
    chosen = record["evaluated_checkpoint"]
    assert chosen["epoch"] in epochs
    assert torch.load(resolve_run_dir(args) / chosen["checkpoint"], weights_only=False)["epoch"] == chosen["epoch"]


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                            ("adamw", torch.optim.AdamW)])
def test_the_optimizer_is_the_one_the_config_names(name, kind):
    """A paper that says Adam gets Adam (L2 decay in the gradient), not AdamW's decoupled decay."""
    model = DPSHGoogLeNet(bits=16, optimizer=name, schedule="constant")
    optimizer = model.configure_optimizers()
    assert type(optimizer) is kind


class CheckpointsSeen(L.Callback):
    def __init__(self):
        self.seen = []

    def on_train_epoch_start(self, trainer, module):
        self.seen.append(sorted(p.name for p in (Path(trainer.default_root_dir) / "checkpoints").glob("*.ckpt")))


def test_last_checkpoint_after_every_epoch_even_between_validations(tmp_path):
    """A killed run loses at most the epoch in progress: last.ckpt is written after every training epoch,
    also the epochs that validation skips."""
    seen = CheckpointsSeen()
    model = DPSHGoogLeNet(bits=16, lr=0.05, validate_every=3)
    trainer = L.Trainer(max_epochs=4, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                        callbacks=[seen])
    trainer.fit(model, datamodule=Digits(batch_size=50, splits_dir=str(tmp_path / "splits")))
    assert seen.seen[0] == [] and all("last.ckpt" in names for names in seen.seen[1:])
    assert "best-epoch=2.ckpt" in seen.seen[3]  # validated after epoch 3 of 4 (index 2), then after the last


def test_the_paper_profile_puts_the_hash_layer_on_the_backbone_features_as_the_patent_does():
    """dpsh_googlenet's patent replaces GoogLeNet's classifier with the hash layer: no BatchNorm before it,
    GoogLeNet's own dropout kept; the cpu profile's extra layers are ours and its config names them."""
    from hashlab.configs import compose
    paper = compose(ROOT / "experiments/methods/dpsh_googlenet.yaml", "paper")["model"]["init_args"]
    head = DPSHGoogLeNet(bits=48, backbone_pretrained=False, head_batchnorm=paper["head_batchnorm"],
                         head_dropout=paper["head_dropout"], head_hidden=paper.get("head_hidden", 0)).head
    kinds = [type(layer).__name__ for layer in head]
    assert kinds == ["Dropout", "Linear", "Tanh"] and head[0].p == 0.2
    cpu = compose(ROOT / "experiments/methods/dpsh_googlenet.yaml", "cpu")["model"]["init_args"]
    assert cpu["head_batchnorm"] is True and cpu["head_hidden"] == 1024


def test_an_option_added_at_its_old_behaviour_keeps_the_config_hash():
    from hashlab.records.record import config_hash
    base = {"model": {"init_args": {"bits": 48}}}
    same = {"model": {"init_args": {"bits": 48, "head_batchnorm": True}}}
    other = {"model": {"init_args": {"bits": 48, "head_batchnorm": False}}}
    assert config_hash(base) == config_hash(same) != config_hash(other)


def test_a_callback_that_can_change_the_run_gives_it_a_cell_of_its_own():
    """`--trainer.callbacks+=EarlyStopping` (docs/datasets.md) stops a run early: it is not the plain cell, whose
    finished record would otherwise stand for it (or be taken from it). A callback that only watches does not
    change the hash, nor does none at all (every committed record)."""
    from hashlab.records.record import config_hash
    from hashlab.runs.fit import resolve_config
    base = ["--config", "experiments/methods/dpsh_googlenet.yaml", "--profile", "demo"]
    plain = config_hash(resolve_config(base))
    watched = config_hash(resolve_config([*base, "--trainer.callbacks+=LearningRateMonitor"]))
    by_module = config_hash(resolve_config([*base, "--trainer.callbacks+=lightning.pytorch.callbacks.lr_monitor."
                                                   "LearningRateMonitor"]))
    stopped = config_hash(resolve_config([*base, "--trainer.callbacks+=EarlyStopping",
                                          "--trainer.callbacks.monitor=val/map", "--trainer.callbacks.mode=max"]))
    assert plain == watched == by_module != stopped
    assert config_hash({"trainer": {"callbacks": None}}) == config_hash({"trainer": {}})


def test_dpsh_googlenet_binarises_an_exact_zero_to_minus_one_as_claim_3_does():
    """Claim 3: b = +1 where v > 0, else -1 (the shared binarisation, sign >= 0, would give +1)."""
    model = DPSHGoogLeNet(bits=8).eval()
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    features = torch.randn(3, 1280)
    assert torch.equal(model(features), torch.zeros(3, 8))
    assert torch.equal(model.test_codes(features, torch.arange(3), "database"), -torch.ones(3, 8))
    from hashlab.methods import AttributeHash
    assert AttributeHash(bits=8).reconstruction_weight == 0.1  # the class default the demo trains with
