"""Backbone features computed once per (data, extractor, input size, preprocessing) and reused by
every run in frozen mode. The extractor is a backbone (pooled vectors) or any module with a
``cache_name`` (e.g. :class:`hashlab.backbones.taps.StageGrids`, multi-level grids). Files are
written beside, then renamed: a killed caching pass leaves no half-written cache behind. Processes that start
on a cold cache together (two sweep agents, a campaign beside a reproduction) compute it once: the first takes
a lock on the file, the others wait for it and read what it wrote. A cache is read memory-mapped
(copy-on-write): processes that read one share its pages instead of each holding a copy."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hashlab.locks import exclusive


def default_cache_dir() -> Path:
    return Path(os.environ.get("HASHLAB_CACHE", Path.home() / ".cache" / "hashlab")) / "features"


def cache_key(datamodule, extractor: nn.Module, pretrained: bool) -> dict:
    """What the cached features depend on. The weights go in by content (another release of a package's
    ImageNet weights under the same name is another cache); a change of the extractor's code bumps the results
    version (hashlab's rule for any change of results), which goes in too."""
    from hashlab.records.record import RESULTS_VERSION
    return {"data": datamodule.source.fingerprint(), "dataset": datamodule.name, "backbone": extractor.cache_name,
            "pretrained": pretrained, "input": datamodule.transform_description(), "version": 1,
            "results_version": RESULTS_VERSION, "weights": weights_digest(extractor)}


def weights_digest(module: nn.Module) -> str:
    """sha256 of the module's parameters and buffers, by name (about 20 ms for EfficientNet-Lite0)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def cached_features(datamodule, extractor: nn.Module, pretrained: bool, cache_dir: str | Path | None = None,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, dict]:
    """(extractor outputs of every item in source order as float16, info with path / hit / seconds)."""
    datamodule.prepare()
    key = cache_key(datamodule, extractor, pretrained)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"{datamodule.name}-{extractor.cache_name}-{digest}.npy"
    if path.exists():
        return _read(path), {"path": str(path), "hit": True, "seconds": 0.0}
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_suffix(".lock"), wait=True):  # one process computes, the others wait and read
        if path.exists():  # another process computed it while this one waited
            return _read(path), {"path": str(path), "hit": True, "seconds": 0.0}
        return _compute(datamodule, extractor, key, path, device)


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def _compute(datamodule, extractor: nn.Module, key: dict, path: Path, device) -> tuple[torch.Tensor, dict]:
    import time
    start = time.perf_counter()
    was_training = extractor.training
    extractor = extractor.to(device).eval().to(memory_format=torch.channels_last)
    dataset = datamodule.all_items()
    loader = DataLoader(dataset, batch_size=128, num_workers=datamodule.num_workers, shuffle=False)
    out, done = None, 0
    for images, _, _ in tqdm(loader, desc=f"caching {extractor.cache_name} features of {datamodule.name}",
                             unit="batch"):
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():  # no autograd bookkeeping at all; only numpy leaves this block
            feats = extractor(images).float().cpu().numpy()
        if out is None:  # the output shape is the extractor's business: vectors or grids
            out = np.empty((len(dataset), *feats.shape[1:]), dtype=np.float16)
        out[done:done + len(feats)] = feats
        done += len(feats)
    # the extractor may share its weights with what is trained next (partial mode's late stages): give
    # them back in the layout and mode they came in, or a run that computed the cache would train on
    # channels-last weights (other kernels, other sums) and give another result than one that found it
    extractor.to(memory_format=torch.contiguous_format).train(was_training)
    from hashlab.io import atomic_path
    with atomic_path(path, kept="every other cached feature file") as tmp:
        np.save(tmp, out)
    path.with_suffix(".json").write_text(json.dumps(key, indent=1))
    return torch.from_numpy(out), {"path": str(path), "hit": False, "seconds": time.perf_counter() - start}
