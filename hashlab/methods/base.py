"""HashingModule: everything a hashing method needs that is not the method itself.

A method subclasses it and writes only :meth:`hash_loss` (and, when it needs one, its own
``build_head``). This class owns the backbone (frozen with cached features, or fine-tuned),
the optimiser, encoding of queries and database, evaluation and the metrics the run record
keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from torch import nn

from hashlab.backbones import create_backbone
from hashlab.backbones.stages import EarlyStages, LateStages
from hashlab.clock import active_time
from hashlab.errors import ConfigError
from hashlab.evaluation import HashingRetrievalMetric, RetrievalReport

MIN_BITS, MAX_BITS = 4, 127


class NonFiniteLossError(RuntimeError):
    pass


def code_statistics(codes: torch.Tensor) -> dict[str, float]:
    """bit_balance: mean over bits of |mean of the bit| (0 = each bit is +1 on half the codes).
    bit_correlation: mean |Pearson correlation| between distinct bits (0 = no redundant bits)."""
    balance = float(codes.mean(0).abs().mean())
    bits = codes.shape[1]
    if len(codes) < 2 or bits < 2:
        return {"bit_balance": balance, "bit_correlation": 0.0}
    correlation = torch.nan_to_num(torch.corrcoef(codes.T))  # a constant bit correlates with nothing
    off_diagonal = ~torch.eye(bits, dtype=torch.bool)
    return {"bit_balance": balance, "bit_correlation": float(correlation[off_diagonal].abs().mean())}


class EpochCheckpoint(Checkpoint):
    """Write ``path`` at the end of every training epoch, atomically (beside, then renamed): the checkpoint a
    killed run resumes from, whatever epochs validation runs on. A Checkpoint, so Lightning runs it after the
    best-epoch ModelCheckpoint, whose state (the best file) it then saves as that callback left it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer, module) -> None:
        import os
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("last checkpoint")


KINDS = ("deep", "closed-form", "unsupervised")
_REGISTRY: dict[str, type] = {}


class HashingModule(L.LightningModule):
    """A method registers itself by defining ``method_id`` (its name in configs, tables and the CLI), ``kind``
    (deep: trained for epochs, and tuned before its table cells; closed-form: fitted once on frozen features;
    unsupervised: no labels) and ``display_name`` (what a paper prints); ``seed_method`` marks the four
    methods the project exists for."""

    method_id: str = ""
    display_name: str = ""
    kind: str = "deep"
    seed_method: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "method_id" in cls.__dict__ and cls.method_id:
            if cls.kind not in KINDS:
                raise TypeError(f"{cls.__name__}.kind = {cls.kind!r}: one of {KINDS}")
            _REGISTRY[cls.method_id] = cls

    def __init__(self, bits: int = 32, backbone: str = "efficientnet_lite0", backbone_pretrained: bool = True,
                 mode: Literal["frozen", "partial", "finetune"] = "frozen", frozen_stages: int = 6,
                 optimizer: Literal["sgd", "adam", "adamw"] = "sgd",
                 lr: float = 0.01, backbone_lr: float = 1e-3, weight_decay: float = 5e-4, momentum: float = 0.9,
                 schedule: Literal["cosine", "onecycle", "constant"] = "cosine", head_hidden: int = 0,
                 head_dropout: float = 0.0, map_flip: bool = True, feature_cache_dir: str | None = None,
                 validate_every: int = 1, head_batchnorm: bool = True):
        """mode: ``frozen`` trains the head on cached pooled features; ``partial`` caches the output of
        the first ``frozen_stages`` backbone stages once and fine-tunes the rest with the head (the
        CPU profile: the early stages dominate the cost); ``finetune`` trains everything from images.
        head_hidden > 0 puts a hidden ReLU layer of that width before the hash layer. schedule: cosine
        (linear warm-up, then cosine), onecycle (torch's OneCycleLR, peaking at each group's lr) or
        constant. map_flip: in partial mode, mirror half of each training batch's cached maps.
        validate_every: run model selection's validation every k epochs, and always after the last one.
        head_batchnorm: a BatchNorm1d on the features before the hash head (ours, see build_head); a method
        whose source puts the hash layer right on the backbone's features turns it off in its paper profile."""
        super().__init__()
        if not MIN_BITS <= bits <= MAX_BITS:
            raise ConfigError(f"model.bits = {bits}: choose a code length between {MIN_BITS} and {MAX_BITS} "
                             "(the literature uses 12, 16, 24, 32, 48, 64)")
        self.save_hyperparameters()
        self.bits = bits
        self.backbone = create_backbone(backbone, pretrained=backbone_pretrained)
        self.late_stages: LateStages | None = None
        self.extractor = self.build_extractor()
        self.head = self.build_head(self.backbone.feature_dim)
        if mode == "partial":
            if not 0 < frozen_stages < len(self.backbone.stages):
                raise ConfigError(f"model.frozen_stages = {frozen_stages}: {backbone} has stages 0.."
                                 f"{len(self.backbone.stages) - 1}; cache between 1 and {len(self.backbone.stages) - 1}")
            # a multi-level extractor (stage taps) keeps its taps: the early ones are cached, the rest trained
            taps, grid = getattr(self.extractor, "taps", None), getattr(self.extractor, "grid", None)
            self.late_stages = LateStages(self.backbone, frozen_stages, taps, grid)
            self.extractor = EarlyStages(self.backbone, frozen_stages, taps, grid)
        self.retrieval = HashingRetrievalMetric()  # the record's numbers, stable figure included: runs.fit._scores
        self.validation_retrieval = HashingRetrievalMetric()
        self.val_history: list[tuple[int, float]] = []  # (epoch, validation mAP@all)
        self.timings: dict[str, float] = {}
        self.earlier_fit_s = 0.0  # fitting time of the attempts before a resume, from the checkpoint
        # the code each attempt started from (git_commit()), the earlier attempts' from the checkpoint: a cell
        # resumed on other code than it began with ran on both
        self.code_at_attempts: list[dict] = []
        self._fit_started: float | None = None
        self._first_epoch_of_fit = True  # Lightning made this fit's first loader iterator before its epoch began
        self.feature_cache: dict = {}
        self.test_report: RetrievalReport | None = None
        self.evaluated_codes: dict = {}

    # -- what a method may override -------------------------------------------------------------
    def build_extractor(self) -> nn.Module:
        """Images -> what the head reads, and what frozen mode caches: the pooled backbone vector
        by default; multi-level methods return stage taps (hashlab.backbones.taps)."""
        return self.backbone

    def build_head(self, feature_dim: int) -> nn.Module:
        """Feature vector -> real-valued code. BatchNorm first: pooled CNN features are all
        non-negative, and fed raw to a hash layer they give every image nearly the same code."""
        layers: list[nn.Module] = [nn.BatchNorm1d(feature_dim)] if self.hparams.head_batchnorm else []
        width = feature_dim
        if self.hparams.head_hidden:
            layers += [nn.Dropout(self.hparams.head_dropout), nn.Linear(feature_dim, self.hparams.head_hidden),
                       nn.ReLU(inplace=True)]
            width = self.hparams.head_hidden
        layers += [nn.Dropout(self.hparams.head_dropout), nn.Linear(width, self.bits)]
        return nn.Sequential(*layers, nn.Tanh()) if self.tanh_codes else nn.Sequential(*layers)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor,
                  indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, named parts for logging) from the batch's real-valued codes, multi-hot labels,
        the extractor output the codes came from and the items' dataset indices. The only thing
        every method must write."""
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        """Whether the data loaders serve cached extractor outputs instead of images."""
        return self.hparams.mode in ("frozen", "partial")

    wants_class_balanced_batches = False  # a method whose loss needs positives in every batch sets it
    tanh_codes = False  # a method whose relaxed codes live in (-1, 1) sets it: the head ends in a tanh
    multi_label = False  # whether the data set's images carry several labels (set in setup, from the data)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        smallest = self.backbone.min_image_size
        if datamodule.image_size < smallest:
            raise ConfigError(f"data.image_size = {datamodule.image_size}: {self.hparams.backbone} needs at least "
                              f"{smallest} px (its feature maps shrink {smallest}-fold); use {smallest} or more")
        datamodule.prepare()
        datamodule.method_wants_class_balanced = self.wants_class_balanced_batches
        # a loss that differs for multi-label data asks this, never its batch (a batch of one-label images of
        # Flickr25K is still multi-label data)
        self.multi_label = bool((np.asarray(datamodule.source.labels).sum(1) > 1).any())
        if self.frozen and datamodule.features is None:
            from hashlab.features import cached_features
            features, info = cached_features(datamodule, self.extractor, self.hparams.backbone_pretrained,
                                             self.hparams.feature_cache_dir, device=self.trainer.strategy.root_device)
            datamodule.use_features(features)
            self.feature_cache = info
            self.timings["feature_caching_s"] = info["seconds"]
        if self.frozen:
            self.backbone.requires_grad_(False)
        if self.late_stages is not None:
            self.late_stages.requires_grad_(True)
            # channels-last convolutions train the late stages about 1.35x faster on CPU (measured: 3.9 against
            # 2.9 steps/s, dfch at 48 bits); set here on every run, whether or not the cache was computed in it
            self.backbone.to(memory_format=torch.channels_last)
        if self.trainer.strategy.root_device.type == "cpu" and self.hparams.mode != "frozen":
            # oneDNN's depthwise weight gradient is the slow part of a CPU training step (hashlab.backbones.depthwise)
            from hashlab.backbones.depthwise import speed_up_depthwise
            speed_up_depthwise(self.backbone)
        # what a method draws in its setup after this (learned codes, proxies, planes, anchors) starts from
        # the run's seed, whether or not the feature cache above was computed in this run (hashlab.seeding)
        from hashlab.seeding import reseed
        reseed("setup")

    def on_train_epoch_start(self) -> None:
        """Flips, dropout and sampled columns of epoch e come from a state derived from (seed, e) alone:
        the same in a resumed run as in an uninterrupted one."""
        from hashlab.seeding import reseed
        reseed("epoch", self.current_epoch)
        if self._first_epoch_of_fit and self.current_epoch > 0:
            # Lightning creates the training loader's iterator before this hook in a fit's first epoch and after
            # it in every later one, and the iterator draws its base seed from the global generator: an
            # uninterrupted run's epoch e > 0 has drawn that number before its first flip. A run resumed at e
            # draws it here, so that its flips and dropout are the uninterrupted run's.
            torch.empty((), dtype=torch.int64).random_()
        self._first_epoch_of_fit = False
        # validate every k epochs and after the last (Lightning's own check_val_every_n_epoch skips the last
        # epoch when k does not divide max_epochs): Lightning reads the setting at each epoch's end
        every, epoch = max(1, self.hparams.validate_every), self.current_epoch
        last = self.trainer.max_epochs is not None and epoch == self.trainer.max_epochs - 1
        if every > 1:
            self.trainer.check_val_every_n_epoch = 1 if last or (epoch + 1) % every == 0 else epoch + 2

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Images (finetune), cached features (frozen) or cached early-stage maps (partial) -> the
        vector the head reads. Training batches of cached maps are mirrored at random (map_flip)."""
        if self.late_stages is not None:
            flip = None
            if self.training and self.hparams.map_flip:
                flip = torch.rand(len(inputs), device=inputs.device) < 0.5
            return self.late_stages(inputs.float(), flip)
        return inputs.float() if self.frozen else self.extractor(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Images (finetune) or cached features (frozen) -> real-valued codes."""
        return self.head(self.embed(inputs))

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> what the head reads, in any mode (frozen and partial runs were trained on
        cached extractor outputs, which the extractor computes here)."""
        x = self.extractor(images)
        if self.late_stages is not None:
            x = self.late_stages(x)
        return x.float()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> real-valued codes, in any mode (what indexing new images needs)."""
        return self.head(self.extract(images))

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None):
        features = self.embed(inputs)
        if indices is None:
            indices = torch.full((len(inputs),), -1, dtype=torch.long, device=inputs.device)
        return self.hash_loss(self.head(features), labels, features, indices)

    @staticmethod
    def binarize(codes: torch.Tensor) -> torch.Tensor:
        return torch.where(codes >= 0, 1.0, -1.0)

    def training_step(self, batch, batch_idx):
        inputs, labels, indices = batch
        loss, parts = self.training_loss(inputs, labels, indices)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{type(self).__name__}: loss is {loss.item()} at epoch {self.current_epoch}, step {batch_idx} "
                f"(parts: { {k: float(v) for k, v in parts.items()} }). Lower model.lr (now {self.hparams.lr}).")
        self.log("train/loss", loss, prog_bar=True, on_epoch=True, on_step=False)
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_epoch=True, on_step=False)
        return loss

    # -- model selection on the validation set (never on the queries) ------------------------------
    def has_validation(self) -> bool:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return False
        datamodule.prepare()  # configure_callbacks runs before setup
        return len(datamodule.split.val) > 0

    def configure_callbacks(self):
        """Keep last.ckpt for resuming; with a validation set also the best epoch by validation mAP.
        A Trainer built with enable_checkpointing=False gets none."""
        if not self.trainer.checkpoint_callbacks:
            return []
        # in the run folder even when a logger (W&B) would put them in its own
        folder = Path(self.trainer.default_root_dir) / "checkpoints"
        # last.ckpt after every training epoch, validated or not: a killed run loses at most the epoch in progress
        # (Lightning's own save_last writes only when a top-k checkpoint was written in the same step)
        last = EpochCheckpoint(folder / "last.ckpt")
        if self.has_validation():
            return [ModelCheckpoint(dirpath=folder, monitor="val/map", mode="max", save_top_k=1, save_last=False,
                                    filename="best-{epoch}"), last]
        return [last]

    def on_validation_epoch_start(self):
        self.validation_retrieval.reset()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        inputs, labels, index = batch
        role = "query" if dataloader_idx == 0 else "database"  # validation items vs the validation database
        self.validation_retrieval.update(self(inputs), labels, index, role)

    def on_validation_epoch_end(self):
        value = self.validation_retrieval.compute().mean_average_precision()
        self.log("val/map", value, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_history.append((self.current_epoch, value))

    def on_fit_start(self):
        self._fit_started = active_time()
        self._first_epoch_of_fit = True

    def fit_seconds(self) -> float:
        """Time spent fitting, over every attempt of a resumed run, pauses left out."""
        return self.earlier_fit_s + (active_time() - self._fit_started if self._fit_started is not None else 0.0)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["val_history"] = self.val_history
        checkpoint["fit_seconds"] = self.fit_seconds()
        checkpoint["code_at_attempts"] = self.code_at_attempts

    def on_load_checkpoint(self, checkpoint):
        self.val_history = checkpoint.get("val_history", [])
        self.earlier_fit_s = checkpoint.get("fit_seconds", 0.0)
        earlier = checkpoint.get("code_at_attempts") or []  # absent in a checkpoint older than this field
        self.code_at_attempts = earlier + [start for start in self.code_at_attempts if start not in earlier]

    def on_test_epoch_start(self):
        self.retrieval.reset()
        self._encode_start = active_time()

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        inputs, labels, index = batch
        role = "query" if dataloader_idx == 0 else "database"
        self.retrieval.update(self.test_codes(inputs, index, role), labels, index, role)

    def test_codes(self, inputs: torch.Tensor, indices: torch.Tensor, role: str) -> torch.Tensor:
        """The codes evaluated for a test batch: the network's; asymmetric methods may substitute
        their learned database codes."""
        return self(inputs)

    def on_test_epoch_end(self):
        self.timings["encode_s"] = active_time() - self._encode_start
        start = active_time()
        self.test_report = self.retrieval.compute()
        self.evaluated_codes = self.retrieval.gathered_everywhere()  # {role: (codes, labels, indices)}
        self.timings["evaluation_s"] = active_time() - start
        for name, value in self.test_report.summary().items():
            self.log(f"test/{name}", value, sync_dist=False)

    def extra_metrics(self) -> dict[str, float]:
        """Numbers for the run record besides retrieval: how the database codes use their bits.
        Methods add their own (proxy distances, ...)."""
        codes = self.evaluated_codes["database"][0].float()
        return code_statistics(codes)

    def parameter_groups(self) -> list[dict]:
        """What the optimiser trains, with learning rates; a method with its own parameters
        (proxies, learned codes) adds a group here."""
        groups = [{"params": self.head.parameters(), "lr": self.hparams.lr}]
        if self.late_stages is not None:
            groups.append({"params": self.late_stages.parameters(), "lr": self.hparams.backbone_lr})
        elif not self.frozen:
            groups.append({"params": self.backbone.parameters(), "lr": self.hparams.backbone_lr})
        return groups

    def configure_optimizers(self):
        hp = self.hparams
        groups = self.parameter_groups()
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adam":  # L2 weight decay added to the gradient, as papers that say "Adam" use it
            optimizer = torch.optim.Adam(groups, weight_decay=hp.weight_decay)
        else:  # decoupled weight decay
            optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        if hp.schedule == "constant":
            return optimizer
        steps = max(1, self.trainer.estimated_stepping_batches)
        if hp.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                            total_steps=steps, cycle_momentum=hp.optimizer == "sgd")
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        warmup = min(100, steps // 10)

        def factor(step):  # linear warm-up, then cosine to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Registry(Mapping):
    """method_id -> class of every method imported so far (a method defined later, in a user's own module, is
    in it once imported): the seed methods first, then the others by kind and name."""

    def __getitem__(self, method_id: str) -> type:
        return _REGISTRY[method_id]

    def __iter__(self):
        order = {kind: index for index, kind in enumerate(KINDS)}
        return iter(sorted(_REGISTRY, key=lambda m: (not _REGISTRY[m].seed_method, order[_REGISTRY[m].kind], m)))

    def __len__(self) -> int:
        return len(_REGISTRY)


def registered_methods() -> Registry:
    return Registry()
