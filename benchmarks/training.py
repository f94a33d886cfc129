"""Lightning's overhead per training step: a HashingModule fitted by Lightning against a plain
PyTorch loop over the same model, batches and cached maps, in one run.

Partial mode (the cpu profile): 5,000 cached early-stage maps (80 x 8 x 8, float16, as the stem and
blocks[:4] of efficientnet_lite0 give them at 128 px; random values: speed does not depend on
them) through blocks[4:], the head conv and the hash layer, batch 50, AdamW; frozen mode: 1280-d
cached vectors into the hash head. Each side runs one warm-up epoch, then ``--epochs`` timed ones.

    .venv/bin/python benchmarks/training.py [--mode partial|frozen|both] [--epochs 2] [--items 5000]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import lightning as L
import numpy as np
import torch

from hashlab.backbones.depthwise import speed_up_depthwise
from hashlab.data.base import HashingDataModule
from hashlab.data.sources import Source
from hashlab.methods import DPSHGoogLeNet


class CachedMaps(HashingDataModule):
    """Random 'cached' maps served like a real data set's cache: the loaders and batches a run sees."""

    name = "benchmark"
    default_protocol = "digits"

    def __init__(self, shape: tuple[int, ...], items: int, **kwargs):
        super().__init__(val_fraction=0, **kwargs)
        self.shape, self.items = shape, items

    def load_source(self) -> Source:
        labels = np.eye(10, dtype=np.uint8)[np.arange(self.items + 300) % 10]
        return Source("benchmark", [None] * len(labels), labels, [str(c) for c in range(10)])

    def setup(self, stage=None):
        self.prepare()
        if self.features is None:
            generator = torch.Generator().manual_seed(0)
            self.use_features(torch.randn(len(self.source.items), *self.shape, generator=generator).half())


def model_and_data(mode: str, items: int, batch: int):
    torch.manual_seed(0)
    model = DPSHGoogLeNet(bits=48, mode=mode, frozen_stages=5, optimizer="adamw", schedule="constant",
                          lr=3e-3, backbone_lr=3e-4, head_hidden=1024)
    shape = (80, 8, 8) if mode == "partial" else (1280,)
    data = CachedMaps(shape, items, batch_size=batch)
    return model, data


def plain_epoch(model, loader, optimizer) -> float:
    model.train()
    start = time.perf_counter()
    for inputs, labels, indices in loader:
        loss, _ = model.training_loss(inputs, labels, indices)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


class EpochTimer(L.Callback):
    def __init__(self):
        self.times = []

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.times.append(time.perf_counter() - self.start)


def measure(mode: str, epochs: int, items: int, batch: int) -> dict:
    model, data = model_and_data(mode, items, batch)
    data.setup()
    model.backbone.requires_grad_(False)
    if model.late_stages is not None:
        model.late_stages.requires_grad_(True)
        model.backbone.to(memory_format=torch.channels_last)  # as HashingModule.setup does in partial mode
    speed_up_depthwise(model.backbone)  # as HashingModule.setup does on CPU
    loader = data.train_dataloader()
    optimizer = torch.optim.AdamW([{"params": list(g["params"]), "lr": g["lr"]} for g in model.parameter_groups()])
    plain = [plain_epoch(model, loader, optimizer) for _ in range(epochs + 1)][1:]

    model, data = model_and_data(mode, items, batch)
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=epochs + 1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    trainer.fit(model, datamodule=data)
    lightning = timer.times[1:]
    steps = len(loader)
    return {"mode": mode, "steps": steps, "plain_s": float(np.median(plain)),
            "lightning_s": float(np.median(lightning)),
            "overhead": float(np.median(lightning) / np.median(plain) - 1)}


def layout_steps(steps: int = 20, batch: int = 50) -> list[dict]:
    """Training steps of the late stages with contiguous against channels-last weights and inputs, then
    channels-last with the compiled depthwise weight gradient (hashlab.backbones.depthwise: what partial
    mode uses on CPU), same model and inputs, one after the other in this process."""
    rows = []
    for layout in ("contiguous", "channels_last", "channels_last + compiled depthwise grad"):
        model, _ = model_and_data("partial", 10, batch)
        model.late_stages.requires_grad_(True)
        if layout.startswith("channels_last"):
            model.backbone.to(memory_format=torch.channels_last)
        else:  # what partial mode did before: contiguous weights and activations
            model.late_stages.memory_format = torch.contiguous_format
        if layout.endswith("grad"):
            speed_up_depthwise(model.backbone)
        optimizer = torch.optim.AdamW([{"params": list(g["params"]), "lr": g["lr"]} for g in model.parameter_groups()])
        x = torch.randn(batch, 80, 8, 8, generator=torch.Generator().manual_seed(0)).half()
        y = torch.nn.functional.one_hot(torch.arange(batch) % 10, 10)
        model.train()

        def step(model=model, optimizer=optimizer, x=x, y=y):
            loss, _ = model.training_loss(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rows.append({"layout": layout, "steps_per_s": steps / (time.perf_counter() - start)})
    for row in rows:
        row["ratio"] = row["steps_per_s"] / rows[0]["steps_per_s"]
    return rows


def depthwise_weight_grads(repeats: int = 30, batch: int = 50) -> list[dict]:
    """The weight gradient of each depthwise convolution shape that partial mode trains (efficientnet_lite0's
    blocks[4:] at 128 px): oneDNN's kernel against the compiled per-tap sum, same tensors, same process."""
    from hashlab.backbones.depthwise import compiled_weight_grad, onednn_backward
    compiled = compiled_weight_grad()
    rows = []
    for channels, side, kernel, stride, padding in [(480, 8, 5, 1, 2), (672, 8, 5, 1, 2), (672, 11, 5, 2, 0),
                                                    (1152, 4, 5, 1, 2), (1152, 4, 3, 1, 1)]:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, channels, side, side, generator=generator).contiguous(memory_format=torch.channels_last)
        out = (side + 2 * padding - kernel) // stride + 1
        grad = torch.randn(batch, channels, out, out, generator=generator).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(channels, 1, kernel, kernel, generator=generator)

        onednn = partial(onednn_backward, grad, x, weight, [stride] * 2, [padding] * 2, weight_grad=True)
        taps = partial(compiled, x, grad, (kernel, kernel), (stride, stride), (padding, padding))
        error = float((taps() - onednn()).abs().max() / onednn().abs().max())
        times = {}
        for name, fn in (("oneDNN", onednn), ("compiled taps", taps)):
            for _ in range(3):
                fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            times[name] = (time.perf_counter() - start) / repeats * 1e3
        rows.append({"shape": f"{channels} x {side} x {side}, {kernel}x{kernel}, stride {stride}",
                     "oneDNN ms": times["oneDNN"], "compiled ms": times["compiled taps"],
                     "speed-up": times["oneDNN"] / times["compiled taps"], "max rel. difference x 1e6": error * 1e6})
    return rows


def main():
    from hashlab.allocator import configure_allocator
    configure_allocator()  # as every hashlab process does
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["partial", "frozen", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| mode | steps/epoch | plain loop s/epoch | Lightning s/epoch | Lightning overhead |")
    print("|---|---:|---:|---:|---:|")
    for mode in (["partial", "frozen"] if args.mode == "both" else [args.mode]):
        r = measure(mode, args.epochs, args.items, args.batch)
        print(f"| {mode} | {r['steps']} | {r['plain_s']:.2f} | {r['lightning_s']:.2f} | {100 * r['overhead']:+.1f}% |")


if __name__ == "__main__":
    main()
