"""`hashlab explain METHOD --checkpoint CKPT --images ...`: a PNG grid of images with what the
method looks at (for fdh_mfe: its background-suppression mask), so a user can see it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hashlab.data.sources import DatasetError, load_image


def _run_config(checkpoint: Path) -> dict | None:
    """The run's resolved config, from the record beside the checkpoints folder, when there is one."""
    record = checkpoint.parent.parent / "record.json"
    return json.loads(record.read_text())["config"] if record.exists() else None


def eval_transform_of(config: dict | None, image_size: int | None):
    """The evaluation transform the run used (its DataModule's), or a plain resize."""
    from torchvision.transforms import v2
    if config is not None:
        from hashlab.objects import class_of
        data = config["data"]
        init_args = {k: v for k, v in data["init_args"].items() if k != "root"}
        if image_size:
            init_args["image_size"] = image_size
        return class_of(data["class_path"])(**init_args).eval_transform()
    size = image_size or 224
    return v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


def _save(figure, out: str) -> Path:
    import matplotlib.pyplot as plt
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.tmp{os.getpid()}.png")
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(target)
    return target


def explain_bits(checkpoint: str, data_root: str | None, out: str, bits: list[int] | None = None,
                 per_bit: int = 6, limit: int = 1000) -> list[Path]:
    """For attribute-aware codes: per chosen bit, the images that set it most strongly (largest
    tanh output) and those that clear it most strongly, from the run's query set; and the heat map
    of the correlations between bits over those images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from hashlab.methods import METHODS
    from hashlab.objects import class_of
    path = Path(checkpoint)
    config = _run_config(path)
    if config is None:
        raise SystemExit(f"no record.json beside {path.parent}: explain needs a finished run's checkpoint")
    model = METHODS["attribute_hash"].load_from_checkpoint(path, map_location="cpu").eval()
    data_args = {k: v for k, v in config["data"]["init_args"].items() if k != "root"}
    datamodule = class_of(config["data"]["class_path"])(root=data_root, **data_args)
    datamodule.prepare()
    items = datamodule.split.query[:limit]
    transform = datamodule.eval_transform()
    images = torch.stack([transform(load_image(datamodule.source.items[i])) for i in items])
    with torch.no_grad():
        soft = torch.cat([model.encode_images(chunk) for chunk in images.split(64)])
    chosen = bits if bits is not None else list(range(min(4, soft.shape[1])))
    figure, axes = plt.subplots(2 * len(chosen), per_bit, figsize=(1.3 * per_bit, 2.7 * len(chosen)), squeeze=False)
    for row, bit in enumerate(chosen):
        order = torch.argsort(soft[:, bit])
        for side, picks in enumerate((order.flip(0)[:per_bit], order[:per_bit])):
            for column, pick in enumerate(picks):
                axis = axes[2 * row + side, column]
                axis.imshow(images[pick].permute(1, 2, 0).clamp(0, 1))
                axis.set_xticks([]), axis.set_yticks([])
                if column == 0:
                    axis.set_ylabel(f"bit {bit} {'set' if side == 0 else 'clear'}", fontsize=8)
    figure.suptitle("images that set / clear each bit most strongly (query set)", fontsize=9)
    written = [_save(figure, out)]
    signs = torch.where(soft >= 0, 1.0, -1.0).numpy()
    correlation = np.nan_to_num(np.corrcoef(signs.T))
    figure, axis = plt.subplots(figsize=(5, 4.2))
    shown = axis.imshow(correlation, cmap="RdBu_r", vmin=-1, vmax=1)  # diverging around 0, perceptually even
    off = correlation[~np.eye(len(correlation), dtype=bool)]
    axis.set_title(f"bit correlation (mean |off-diagonal| {np.abs(off).mean():.3f})", fontsize=9)
    axis.set_xlabel("bit"), axis.set_ylabel("bit")
    figure.colorbar(shown)
    written.append(_save(figure, str(Path(out).with_name(Path(out).stem + "-correlation.png"))))
    return written


def explain(method: str, checkpoint: str, images: list[str], out: str, image_size: int | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    from hashlab.methods import METHODS
    if method not in METHODS:
        raise SystemExit(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    cls = METHODS[method]
    if not hasattr(cls, "background_mask"):
        raise SystemExit(f"{method} has nothing to explain yet (no background_mask); fdh_mfe has")
    path = Path(checkpoint)
    if not path.is_file():
        raise SystemExit(f"checkpoint {path} does not exist; runs keep them in <run>/checkpoints/")
    model = cls.load_from_checkpoint(path, map_location="cpu").eval()
    transform = eval_transform_of(_run_config(path), image_size)
    pictures, masks = [], []
    for name in images:
        if not Path(name).is_file():
            raise DatasetError(f"image {name} does not exist")
        tensor = transform(load_image(str(name)))
        with torch.no_grad():
            mask = model.background_mask(tensor[None])
        masks.append(F.interpolate(mask[:, None], size=tensor.shape[-2:], mode="bilinear")[0, 0])
        pictures.append(tensor.permute(1, 2, 0).clamp(0, 1))
    figure, axes = plt.subplots(2, len(images), figsize=(1.7 * len(images) + 0.6, 3.6), squeeze=False,
                                layout="constrained")
    shown = None
    for column, (name, picture, mask) in enumerate(zip(images, pictures, masks, strict=True)):
        # the image and its mask share a column, titled in the order the images were given
        axes[0, column].imshow(picture)
        axes[0, column].set_title(f"{column + 1}. {Path(name).name}", fontsize=7)
        axes[1, column].imshow(picture)
        shown = axes[1, column].imshow(mask, cmap="magma", alpha=0.6, vmin=0, vmax=1)  # perceptually uniform
        axes[1, column].set_title(f"{column + 1}. mask mean {float(mask.mean()):.2f}", fontsize=7)
        for axis in axes[:, column]:
            axis.axis("off")
    figure.colorbar(shown, ax=axes[1, :].tolist(), shrink=0.8, label="mask (1 = kept)")
    figure.suptitle(f"{method}: background-suppression mask", fontsize=9)
    return _save(figure, out)
