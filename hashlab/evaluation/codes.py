"""Binary codes and label sets in the packed form the retrieval kernels read.

Codes arrive as +-1 arrays (what ``sign`` gives), {0,1} arrays, or already packed bits
(:class:`PackedCodes`). Internally every code is a row of uint64 words, so a Hamming distance
is a handful of XOR + popcount instructions. Labels are packed the same way: two items are
relevant to each other when their label words share a set bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


@dataclass(frozen=True)
class PackedCodes:
    """Codes packed 8 bits per byte, first bit in the most significant bit (``np.packbits`` order)."""

    bytes: np.ndarray  # (n, ceil(bits / 8)) uint8
    bits: int

    def __post_init__(self):
        if self.bytes.dtype != np.uint8 or self.bytes.ndim != 2:
            raise ValueError("PackedCodes.bytes must be a 2-D uint8 array (n, ceil(bits/8))")
        if self.bytes.shape[1] != (self.bits + 7) // 8:
            raise ValueError(f"PackedCodes: {self.bits} bits need {(self.bits + 7) // 8} bytes per code, "
                             f"got {self.bytes.shape[1]}")

    def __len__(self) -> int:
        return self.bytes.shape[0]

    def words(self) -> np.ndarray:
        """The codes as (n, ceil(bits/64)) uint64 words, zero-padded (padding bits never differ)."""
        return _as_words(self.bytes)

    def unpack(self) -> np.ndarray:
        """The codes as a (n, bits) array of +-1 int8 values."""
        bits01 = np.unpackbits(self.bytes, axis=1, count=self.bits)
        return (bits01.astype(np.int8) * 2 - 1)


def pack_codes(codes, name: str = "codes") -> PackedCodes:
    """Pack +-1 or {0,1} codes of shape (n, bits); a PackedCodes passes through.

    A bit of exactly 0 in a +-1 code is what ``sign(0)`` gives: it is a bug in the caller (the
    item would be at distance 0.5 from both values), so it is rejected rather than guessed.
    """
    if isinstance(codes, PackedCodes):
        return codes
    array = _to_numpy(codes)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n, bits), got shape {array.shape}")
    if array.dtype == np.bool_:
        return PackedCodes(np.packbits(array, axis=1), array.shape[1])
    if (np.abs(array) == 1).all():  # +-1 codes, the common case: two passes instead of the checks' six
        return PackedCodes(np.packbits(array > 0, axis=1), array.shape[1])
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{name}: codes contain NaN or inf; the model diverged (check the loss and learning rate)")
    negative = array < 0
    if negative.any():
        zeros = array == 0
        if zeros.any():
            row, col = map(int, np.argwhere(zeros)[0])
            raise ValueError(
                f"{name}: bit {col} of code {row} is exactly 0 in a +-1 code ({int(zeros.sum())} such bits). "
                "sign(0) = 0 is not a bit: binarise with `torch.where(v >= 0, 1, -1)` instead of sign().")
        if not np.isin(array, (-1, 1)).all():
            raise ValueError(f"{name}: values other than -1/+1 found; binarise the outputs before evaluation")
        return PackedCodes(np.packbits(~negative, axis=1), array.shape[1])
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name}: codes must be +-1 or {{0,1}}; wrap packed uint8 bytes in PackedCodes(bytes, bits)")
    return PackedCodes(np.packbits(array.astype(bool), axis=1), array.shape[1])


def pack_labels(labels, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Pack one-hot / multi-hot labels (n, C), or integer class ids (n,), into uint64 words."""
    array = _to_numpy(labels)
    if array.ndim == 1:
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name}: 1-D labels must be integer class ids")
        classes = int(num_classes or array.max() + 1)
        onehot = np.zeros((array.shape[0], classes), dtype=bool)
        onehot[np.arange(array.shape[0]), array] = True
        array = onehot
    if array.ndim != 2:
        raise ValueError(f"{name}: expected (n, num_classes) multi-hot labels, got shape {array.shape}")
    return _as_words(np.packbits(array != 0, axis=1))


def _as_words(packed: np.ndarray) -> np.ndarray:
    """(n, nbytes) uint8 -> (n, ceil(nbytes/8)) uint64, zero-padded."""
    n, nbytes = packed.shape
    padded = np.zeros((n, -(-nbytes // 8) * 8), dtype=np.uint8)
    padded[:, :nbytes] = packed
    return padded.view(np.uint64)
