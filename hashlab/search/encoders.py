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
                "precision": self.precision, "transform": f"resize short side {resize_size(self.image_size)}, center crop {self.image_size}",
                **{name: getattr(self.quantizer, name) for name in ("whiten_dims", "fitted_on")
                   if self.quantizer is not None and getattr(self.quantizer, name) is not None}}

    def save(self, folder: Path) -> None:
        arrays = self.quantizer.save()
        if len(self.pooled.part_channels):
            arrays["part_channels"] = self.pooled.part_channels.cpu().numpy()
        np.savez(folder / "encoder.npz", **arrays)

    @classmethod
    def load(cls, folder: Path, meta: dict, device: str = "cpu") -> UnsupervisedEncoder:
        # the index's codes were computed at its precision: queries are encoded the same way
        encoder = cls(meta["features"], int(meta["bits"]), meta["backbone"], int(meta["image_size"]),
                      meta["quantizer"], device, meta["precision"])
        with np.load(folder / "encoder.npz") as arrays:
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
        if not (self.record_path.parent / checkpoint).exists():  # a committed copy under reports/ keeps no weights
            raise FileNotFoundError(f"{self.record_path}: its checkpoint {checkpoint} is not beside it (a record "
                                    "committed under reports/ keeps its codes, not its weights); pass the run's own "
                                    "folder under runs/, or train it again with `hashlab fit`")
        module_path, _, name = record["config"]["model"]["class_path"].rpartition(".")
        cls = getattr(__import__(module_path, fromlist=[name]), name)
        self.model = cls.load_from_checkpoint(self.record_path.parent / checkpoint, map_location=device).eval()
        data = record["config"]["data"]
        data_module, _, data_name = data["class_path"].rpartition(".")
        data_class = getattr(__import__(data_module, fromlist=[data_name]), data_name)
        # the run's own evaluation transform: its data module's default size where the config left it unset
        # (digits 64, cifar10 128), a whole-image resize where it set resize_whole (dfch)
        size, self.family = data_class.evaluation_geometry(data.get("init_args", {}))
        self.image_size = int(size)
        self.transform = eval_transform(self.image_size, self.family)
        self.bits = int(record["bits"])
        self.device = device

    @torch.no_grad()
    def describe(self, images: torch.Tensor) -> np.ndarray:
        return self.model.encode_images(images.to(self.device)).float().cpu().numpy()

    def codes(self, images) -> np.ndarray:
        """Images (PIL images or H x W x 3 uint8 arrays) -> their codes, (n, bits) int8 of +-1, through the run's
        evaluation transform, backbone and hash head."""
        return self.finish(self.describe(torch.stack([self.transform(image) for image in images])))[1]

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
        built_with = meta["run_identity"]
        if encoder.identity() != built_with:
            from hashlab.errors import HashlabError
            raise HashlabError(
                f"index {folder.parent}: its codes were made by run {meta['run']} as it was then ({built_with}), but "
                f"that run is now {encoder.identity()}: queries would be encoded by another model than the index. "
                f"Rebuild the index with `hashlab index build --images {meta.get('images_root', 'DIR')} --out "
                f"{folder.parent} --run {meta['run']}`.")
        stored = (int(meta.get("image_size", encoder.image_size)), meta.get("transform", encoder.family))
        if stored != (encoder.image_size, encoder.family):
            # built before the run's own geometry was read (at 224 px): queries and new images are encoded as the
            # index's codes were, so that the index stays one encoder; `--run RUN` again re-encodes it all
            encoder.image_size, encoder.family = stored
            encoder.transform = eval_transform(*stored)
        return encoder


REQUIRED_META = {"supervised": ("run", "run_identity"),
                 "unsupervised": ("features", "bits", "backbone", "image_size", "quantizer", "precision")}


def load_encoder(folder: Path, meta: dict, device: str = "cpu"):
    kind = meta.get("encoder", "unsupervised")
    missing = [key for key in REQUIRED_META.get(kind, ()) if key not in meta]
    if missing:  # an index another version of hashlab built: say so, rather than a KeyError
        from hashlab.errors import HashlabError
        raise HashlabError(f"index {folder.parent}: its catalog's meta lacks {', '.join(missing)}, which this version of "
                           f"hashlab writes: build the index again with `hashlab index build ... --out {folder.parent}`")
    return (RunEncoder if kind == "supervised" else UnsupervisedEncoder).load(folder, meta, device)


def open_image(path_or_file, max_pixels: int | None = None) -> Image.Image:
    with Image.open(path_or_file) as image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageTooLarge(f"{image.width}x{image.height} pixels is over the limit of {max_pixels}")
        return image.convert("RGB")


class ImageTooLarge(ValueError):
    pass


class TruncatedImage(ValueError):
    pass


# What a query upload may be, and the names the server's refusal gives: the formats `hashlab index build` reads
# by suffix. (PIL's JPEG opener also opens MPO, the JPEG with a second frame that some cameras write.)
QUERY_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
QUERY_FORMAT_NAMES = "jpg, png, webp or bmp"


def open_query_image(data: bytes, max_pixels: int) -> Image.Image:
    """An uploaded query image, checked from its header before any pixel is decoded: one of QUERY_FORMATS
    (else PIL.UnidentifiedImageError), at most ``max_pixels`` pixels, and at most the bytes of pixel data a
    ``max_pixels`` RGB image holds (3 a pixel): an RGBA or CMYK image (4 bytes a pixel) gets three quarters of
    the pixels (ImageTooLarge). A PNG whose image data ends before its last row is refused (TruncatedImage):
    Pillow fills the missing rows with black and says nothing, so 103 bytes declaring 6,320 x 6,320 pixels
    would be decoded, converted and encoded in full."""
    import io
    with Image.open(io.BytesIO(data), formats=QUERY_FORMATS) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"{width}x{height} pixels is over the limit of {max_pixels}")
        depth = max(3, pixel_bytes(image.mode))  # the query becomes RGB: never fewer than 3 bytes a pixel
        if width * height * depth > 3 * max_pixels:
            raise ImageTooLarge(f"{width}x{height} {image.mode} is {width * height * depth / 1e6:.0f} MB of pixels, "
                                f"over the limit of {3 * max_pixels / 1e6:.0f} MB ({max_pixels} RGB pixels)")
        if image.format == "PNG":
            check_png_rows(data)
        return image.convert("RGB")


def pixel_bytes(mode: str) -> int:
    """Bytes a pixel of this PIL mode holds: bands x bytes a band (RGB 3, RGBA and CMYK 4, L and P 1, I;16 2)."""
    from PIL import ImageMode
    mode_info = ImageMode.getmode(mode)
    return len(mode_info.bands) * max(1, int(mode_info.typestr[-1]))


# Adam7 interlacing: each pass's first column, first row, column step and row step (the PNG specification)
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def check_png_rows(data: bytes) -> None:
    """Raise TruncatedImage unless the PNG's image data (its IDAT chunks, inflated) holds every row its header
    declares. Inflated a megabyte at a time and dropped, so a bomb costs no memory; stops at the last row."""
    import struct
    import zlib
    width, height, bit_depth, color_type, _, _, interlaced = struct.unpack(">IIBBBBB", data[16:29])
    bits = bit_depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]  # bits a pixel: depth x channels

    def row_bytes(columns: int) -> int:
        return 1 + (columns * bits + 7) // 8  # a filter-type byte, then the pixels

    if interlaced:  # seven reduced images, each row of each with its filter byte
        passes = [(-(-(width - x) // dx), -(-(height - y) // dy)) for x, y, dx, dy in ADAM7]
        expected = sum(rows * row_bytes(columns) for columns, rows in passes if columns > 0 and rows > 0)
    else:
        expected = height * row_bytes(width)
    inflater, produced, position = zlib.decompressobj(), 0, 8
    while position + 8 <= len(data) and produced < expected:
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            pending = data[position + 8:position + 8 + length]
            while pending and produced < expected:
                produced += len(inflater.decompress(pending, 1 << 20))
                pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        position += 12 + length  # length, type, data, CRC
    if produced < expected:
        raise TruncatedImage(f"the PNG's image data ends at row {produced * height // expected} of {height}")
