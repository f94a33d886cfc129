"""Image -> (float features for re-ranking, +-1 codes): unsupervised pooled descriptors with PCA
whitening and ITQ/LSH, or the hash head of a finished hashlab run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hashlab.data.transforms import eval_transform, resize_size
from hashlab.features.pooling import PooledMap
from hashlab.features.quantize import Quantizer, fit_quantizer

PWA_PARTS = 8  # part detectors (channels) for pwa, chosen on the first batch of the collection
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU's convolutions run bfloat16 natively (oneDNN's test: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


class UnsupervisedEncoder:
    kind = "unsupervised"

    def __init__(self, pooling: str = "crow", bits: int = 64, backbone: str = "efficientnet_lite0",
                 image_size: int = 224, quantizer: str = "itq", device: str = "cpu", precision: str = "auto"):
        from hashlab.backbones import create_backbone
        self.pooling, self.bits, self.backbone_name, self.image_size = pooling, bits, backbone, image_size
        # bfloat16 autocast: the backbone's convolutions in bfloat16, reductions and pooling in float32
        self.precision = resolve_precision(precision)
        self.quantizer_method = quantizer
        # channels-last: the encoder's forward on CPU takes 0.82x the time (224 px, batch 8: 69 against 84 ms)
        self.pooled = PooledMap(create_backbone(backbone), pooling, PWA_PARTS).eval().to(device).to(
            memory_format=torch.channels_last)
        self.device = device
        self.transform = eval_transform(image_size, "photo")
        self.quantizer: Quantizer | None = None
        self._frozen = None

    @torch.inference_mode()
    def describe(self, images: torch.Tensor) -> np.ndarray:
        """Images in [0, 1] -> L2-normalised pooled descriptors (before whitening)."""
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            return self._forward(images)(images).float().cpu().numpy()

    def _forward(self, images: torch.Tensor):
        """The pooled network traced and frozen on the first batch (batch norm folded into the convolutions:
        0.74x the time of the eager module at 128 px, the same descriptors within 1e-6; any batch size and
        image size). pwa and cam stay eager: pwa picks its part channels on the first batch. Traced inside
        describe's autocast, so a bfloat16 encoder freezes its bfloat16 casts."""
        if self._frozen is None:
            self._frozen = self.pooled
            if self.pooling not in ("pwa", "cam"):
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape arithmetic
                    self._frozen = torch.jit.freeze(torch.jit.trace(self.pooled, images).eval())
        return self._frozen

    def fit(self, descriptors: np.ndarray) -> None:
        self.quantizer = fit_quantizer(descriptors, self.bits, self.quantizer_method)

    def finish(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors -> (features for re-ranking, +-1 codes)."""
        return self.quantizer.whiten(descriptors), self.quantizer.codes(descriptors)

    def metadata(self) -> dict:
        return {"encoder": "unsupervised", "features": self.pooling, "quantizer": self.quantizer_method,
                "bits": self.bits, "backbone": self.backbone_name, "image_size": self.image_size,
                "precision": self.precision, "transform": f"resize short side {resize_size(self.image_size)}, center crop {self.image_size}"}

    def save(self, folder: Path) -> None:
        arrays = self.quantizer.save()
        if len(self.pooled.part_channels):
            arrays["part_channels"] = self.pooled.part_channels.cpu().numpy()
        np.savez(folder / "encoder.npz", **arrays)

    @classmethod
    def load(cls, folder: Path, meta: dict, device: str = "cpu") -> UnsupervisedEncoder:
        # the index's codes were computed at its precision: queries are encoded the same way
        encoder = cls(meta["features"], int(meta["bits"]), meta["backbone"], int(meta["image_size"]),
                      meta["quantizer"], device, meta.get("precision", "float32"))
        with np.load(folder / "encoder.npz") as arrays:
            missing = {"mean", "components", "scale", "projection", "method"} - set(arrays.files)
            if missing:
                raise ValueError(f"{folder / 'encoder.npz'} lacks {', '.join(sorted(missing))}: it was written by "
                                 f"an older hashlab; delete {folder.parent} and build the index again")
            encoder.quantizer = Quantizer.load(arrays)
            if "part_channels" in arrays:
                encoder.pooled.part_channels = torch.as_tensor(arrays["part_channels"], device=device)
        return encoder


class RunEncoder:
    """The codes of a finished run: its backbone, evaluation transform and hash head (best checkpoint)."""
    kind = "supervised"

    def __init__(self, run: str | Path, device: str = "cpu"):
        from hashlab.records.record import RECORD_NAME, read_record
        path = Path(run)
        self.record_path = path if path.is_file() else path / RECORD_NAME
        if not self.record_path.exists():
            raise FileNotFoundError(f"--run {run}: no {RECORD_NAME} there; pass a finished run's folder or record")
        record = read_record(self.record_path)
        self.record = record
        checkpoint = record["evaluated_checkpoint"].get("checkpoint")
        if not checkpoint:
            raise ValueError(f"{self.record_path}: the run kept no checkpoint (evaluated_checkpoint.checkpoint); "
                             "rerun it with validation so its best checkpoint is saved")
        module_path, _, name = record["config"]["model"]["class_path"].rpartition(".")
        cls = getattr(__import__(module_path, fromlist=[name]), name)
        self.model = cls.load_from_checkpoint(self.record_path.parent / checkpoint, map_location=device).eval()
        data = record["config"]["data"]
        data_module, _, data_name = data["class_path"].rpartition(".")
        family = getattr(getattr(__import__(data_module, fromlist=[data_name]), data_name), "family", "photo")
        self.image_size = int(data["init_args"].get("image_size") or 224)
        self.transform = eval_transform(self.image_size, family)
        self.family = family
        self.bits = int(record["bits"])
        self.device = device

    @torch.no_grad()
    def describe(self, images: torch.Tensor) -> np.ndarray:
        return self.model.encode_images(images.to(self.device)).float().cpu().numpy()

    def fit(self, descriptors: np.ndarray) -> None:  # nothing to fit: the run learned its codes
        pass

    def finish(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return descriptors, np.where(descriptors >= 0, 1, -1).astype(np.int8)

    def metadata(self) -> dict:
        r = self.record
        return {"encoder": "supervised", "features": f"{r['method']} codes", "bits": self.bits,
                "backbone": r["backbone"], "image_size": self.image_size, "run": str(self.record_path.resolve()),
                "run_identity": self.identity(),
                "method": r["method"], "trained_on": f"{r['dataset']} ({r['protocol']})", "map": r["metrics"]["map"],
                "transform": self.family}

    def save(self, folder: Path) -> None:
        (folder / "encoder.json").write_text(json.dumps({"run": str(self.record_path.resolve())}))

    def identity(self) -> str:
        """Which trained model this is: the run's config hash and when it finished (a rerun changes it)."""
        return f"{self.record.get('config_hash')} finished {self.record.get('finished_at')}"

    @classmethod
    def load(cls, folder: Path, meta: dict, device: str = "cpu") -> RunEncoder:
        encoder = cls(meta["run"], device)
        built_with = meta.get("run_identity")
        if built_with is not None and encoder.identity() != built_with:
            from hashlab.errors import HashlabError
            raise HashlabError(
                f"index {folder.parent}: its codes were made by run {meta['run']} as it was then ({built_with}), but "
                f"that run is now {encoder.identity()}: queries would be encoded by another model than the index. "
                f"Rebuild the index with `hashlab index build --images {meta.get('images_root', 'DIR')} --out "
                f"{folder.parent} --run {meta['run']}`.")
        return encoder


def load_encoder(folder: Path, meta: dict, device: str = "cpu"):
    return (RunEncoder if meta["encoder"] == "supervised" else UnsupervisedEncoder).load(folder, meta, device)


def open_image(path_or_file, max_pixels: int | None = None) -> Image.Image:
    with Image.open(path_or_file) as image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageTooLarge(f"{image.width}x{image.height} pixels is over the limit of {max_pixels}")
        return image.convert("RGB")


class ImageTooLarge(ValueError):
    pass
