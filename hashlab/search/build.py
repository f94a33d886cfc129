"""Building an index of a folder of images, or updating one: building again into the same INDEX encodes
only new or changed files (by content hash), drops deleted ones, and reuses the index's fitted encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from hashlab.search.encoders import open_image
from hashlab.search.index import SearchIndex
from hashlab.search.storage import binary_index, new_build, pack, write_catalog

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
BATCH = 64


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk_images(root: Path) -> list[Path]:
    """The image files under root; a link whose target is gone is kept, to be named in `skipped` (stat fails)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink()))


def utf8_name(path: Path) -> bool:
    """False for a name that is not valid UTF-8 (Python holds its bad bytes as surrogates, which UTF-8 refuses)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _label_of(relative: Path) -> str | None:
    """The folder layout's label: the image's parent folder, when it is not the collection root."""
    return relative.parent.name if relative.parent != Path(".") else None


@dataclass
class BuildReport:
    index: Path
    images: int
    encoded: int
    reused: int
    dropped: int
    skipped: list[tuple[str, str]]
    seconds: float
    fitted_on: int | None = None  # how many images the encoder's PCA/ITQ was fitted on (None: nothing fitted)


def build_index(images: str | Path, out: str | Path, encoder=None, index_type: str | None = None,
                refit: bool = False, progress: bool = True) -> BuildReport:
    """Index (or update the index of) every image under ``images``. ``encoder``: an encoder for a new
    index; for an existing one, None reuses its encoder (``refit``: fit PCA/ITQ again on the collection).
    ``index_type``: one of storage.INDEX_TYPES; None keeps the existing index's (flat for a new one)."""
    root, out = Path(images).resolve(), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {images}: not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    from hashlab.locks import LockHeld, exclusive
    try:  # two builds at once would give the same new ids to different images, and remove each other's folder
        with exclusive(out / ".build.lock", wait=False):
            return _build(root, out, encoder, index_type, refit, progress)
    except LockHeld as error:
        raise ValueError(f"another `hashlab index build` is updating {out} ({error.holder}): run this one again "
                         "once it has finished") from None
    except BaseException:
        if created and not (out / "current").exists():  # a first build that failed leaves no half-made index folder
            shutil.rmtree(out, ignore_errors=True)
        raise


def _build(root: Path, out: Path, encoder, index_type: str | None, refit: bool, progress: bool) -> BuildReport:
    start = time.perf_counter()
    existing = SearchIndex.open(out) if (out / "current").exists() else None
    if existing is not None and "shard" in existing.meta:
        raise ValueError(f"{out} is shard {existing.meta['shard']} of {existing.meta['shards']}, split from "
                         f"{existing.meta['split_from']}: build that index again and split it again")
    previous = existing  # the build whose codes can be reused; its catalog's ids are kept in any case
    index_type = index_type or (previous.meta["index_type"] if previous is not None else "flat")
    if encoder is None:
        if previous is None:
            raise ValueError(f"{out} holds no index yet: name how to encode (--features crow --bits 64, or --run R)")
        encoder = previous.encoder
    elif previous is not None and previous.meta.get("encoder_key") != _encoder_key(encoder):
        previous = None  # another encoder: nothing can be reused
    elif previous is not None and not refit:
        encoder = previous.encoder  # the same encoder, with the PCA/ITQ already fitted on the collection
    files = walk_images(root)
    known = existing.catalog_by_path() if existing is not None else {}
    rows, to_encode, skipped = [], [], []
    for path in files:
        relative = path.relative_to(root)
        if not utf8_name(relative):  # the catalog (SQLite TEXT) holds UTF-8 only: skip it rather than fail at the end
            skipped.append((os.fsencode(relative).decode("utf-8", "backslashreplace"),
                            f"its name is not UTF-8: rename it (`convmv -f latin1 -t utf8 --notest -r {root}` "
                            "renames every such name under the folder)"))
            continue
        old = known.get(str(relative))
        try:
            stat = path.stat()
            # same size and mtime: trust the stored hash; otherwise read the file again
            digest = old["sha256"] if old and old["size"] == stat.st_size and old["mtime"] == stat.st_mtime \
                else file_digest(path)
        except OSError as error:  # no read permission, or deleted since the walk: named and skipped like a bad image
            skipped.append((str(relative), f"{type(error).__name__}: {error.strerror or error}"))
            continue
        row = {"id": old["id"] if old else None, "path": str(relative), "sha256": digest, "size": stat.st_size,
               "mtime": stat.st_mtime, "label": _label_of(relative)}
        if previous is not None and old is not None and old["sha256"] == digest:
            row["previous_row"] = previous.local(old["id"])
        else:
            to_encode.append(len(rows))
        rows.append(row)
    fitted = previous is not None and not refit
    raw = _encode(encoder, root, rows, to_encode if fitted else range(len(rows)), skipped, progress)
    encoded = sorted(raw)
    if not fitted and encoded:
        encoder.fit(np.stack([raw[i] for i in encoded]))
    kept = [i for i, row in enumerate(rows) if i in raw or (fitted and "previous_row" in row)]
    if not kept:
        raise ValueError(f"no decodable image under {root}")
    next_id = _assign_ids([rows[i] for i in kept], existing)
    kept.sort(key=lambda i: rows[i]["id"])  # rows in id order: Hamming ties fall by id
    if encoded:  # one batched projection for every newly encoded image
        new_features, new_codes = encoder.finish(np.stack([raw[i] for i in encoded]))
        new_packed, position = pack(new_codes), {i: j for j, i in enumerate(encoded)}
    rows_out = [rows[i] for i in kept]
    features = np.stack([new_features[position[i]] if i in raw else previous.features[rows[i]["previous_row"]]
                         for i in kept]).astype(np.float32)
    packed = np.stack([new_packed[position[i]] if i in raw else previous.packed[rows[i]["previous_row"]]
                       for i in kept])
    dropped = len(set(known) - {row["path"] for row in rows})  # files gone from the folder
    with new_build(out) as folder:
        _write(folder, root, rows_out, features, packed, encoder, index_type, skipped, next_id)
    return BuildReport(out, len(rows_out), len(raw), len(rows_out) - len(raw), dropped, skipped,
                       time.perf_counter() - start, getattr(getattr(encoder, "quantizer", None), "fitted_on", None))


def _assign_ids(rows: list[dict], existing) -> int:
    """An image keeps its id from build to build (the id names its path: a file changed in place keeps it); a new
    path gets the next id never given, so an id once dropped never names another image. Returns the next id."""
    given = existing.meta.get("next_id", int(existing.ids.max(initial=-1)) + 1) if existing is not None else 0
    for row in rows:  # in path order: new images are numbered as the folder sorts them
        if row["id"] is None:
            row["id"], given = given, given + 1
    return given


def _encoder_key(encoder) -> str:
    meta = {"precision": "float32", **encoder.metadata()}  # a run's encoder has no precision setting: float32
    return json.dumps({k: meta.get(k) for k in ("encoder", "features", "quantizer", "bits", "backbone",
                                                 "image_size", "precision", "run", "run_identity")},
                      sort_keys=True)  # a run retrained in place is another encoder


class _Decoded(torch.utils.data.Dataset):
    """Images of the collection decoded and transformed in DataLoader workers, beside the encoder's
    forward pass; an unreadable file comes back as its error, to be named and skipped."""

    def __init__(self, encoder, root: Path, rows: list[dict], which: list[int]):
        self.transform, self.root, self.rows, self.which = encoder.transform, root, rows, which

    def __len__(self):
        return len(self.which)

    def __getitem__(self, j):
        i = self.which[j]
        try:
            return i, self.transform(open_image(self.root / self.rows[i]["path"])), ""
        except Exception as error:  # noqa: BLE001 - an unreadable image is named and skipped
            return i, None, f"{type(error).__name__}: {error}"


def _batch(items):
    return items  # tensors stacked by the caller, after the unreadable ones are set aside


def _encode(encoder, root: Path, rows: list[dict], which, skipped: list, progress: bool,
            workers: int = 2) -> dict[int, np.ndarray]:
    which = list(which)
    out: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(which), desc="encoding images", unit="img", disable=not progress)
    loader = torch.utils.data.DataLoader(_Decoded(encoder, root, rows, which), batch_size=BATCH, collate_fn=_batch,
                                         num_workers=workers if len(which) > BATCH else 0)
    for items in loader:
        batch = [i for i, tensor, _ in items if tensor is not None]
        skipped.extend((rows[i]["path"], error) for i, tensor, error in items if tensor is None)
        if batch:
            tensors = torch.stack([tensor for _, tensor, _ in items if tensor is not None])
            for i, descriptor in zip(batch, encoder.describe(tensors), strict=True):
                out[i] = descriptor
        bar.update(len(items))
    bar.close()
    return out


def _write(folder: Path, root: Path, rows, features, packed, encoder, index_type, skipped, next_id: int) -> None:
    faiss.write_index_binary(binary_index(index_type, encoder.bits, packed), str(folder / "codes.faiss"))
    np.save(folder / "codes.npy", packed)
    np.save(folder / "features.npy", features.astype(np.float16))
    encoder.save(folder)
    import hashlab
    meta = {**encoder.metadata(), "encoder_key": _encoder_key(encoder), "index_type": index_type,
            "images_root": str(root), "count": len(rows), "next_id": next_id, "skipped_unreadable": len(skipped),
            "hashlab_version": getattr(hashlab, "__version__", "unknown"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_catalog(folder, [(r["id"], r["path"], r["sha256"], r["size"], r["mtime"], r["label"]) for r in rows],
                  meta, skipped)
