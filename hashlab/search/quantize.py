"""From float descriptors to binary codes, fitted on the indexed collection: PCA whitening, then
ITQ (Gong & Lazebnik, CVPR 2011: the rotation of the PCA space that best matches its sign) or LSH
(random hyperplanes, the baseline ITQ is measured against)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

QUANTIZERS = ("itq", "lsh")


@dataclass
class Quantizer:
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (P, D), whitened: rows divided by sqrt(explained variance)
    projection: np.ndarray  # (P, bits): ITQ rotation (first `bits` dims) or LSH hyperplanes
    method: str

    @property
    def bits(self) -> int:
        return self.projection.shape[1]

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """PCA-whitened, L2-normalised features (what re-ranking compares)."""
        out = (np.asarray(features, np.float32) - self.mean) @ self.components.T
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def codes(self, whitened: np.ndarray) -> np.ndarray:
        """+-1 codes (n, bits) from whitened features."""
        return np.where(whitened @ self.projection >= 0, 1, -1).astype(np.int8)

    def save(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "components": self.components, "projection": self.projection,
                "method": np.array(self.method)}

    @classmethod
    def load(cls, arrays) -> Quantizer:
        return cls(arrays["mean"], arrays["components"], arrays["projection"], str(arrays["method"]))


def fit_quantizer(features: np.ndarray, bits: int, method: str = "itq", dims: int = 256, iterations: int = 50,
                  seed: int = 0) -> Quantizer:
    features = np.asarray(features, np.float32)
    if method not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {method!r}; choose one of {', '.join(QUANTIZERS)}")
    dims = max(bits, min(dims, *features.shape))
    if bits > min(features.shape):
        raise ValueError(f"{bits} bits need at least {bits} indexed images and feature dimensions; "
                         f"got {features.shape[0]} images of {features.shape[1]} dimensions")
    pca = PCA(n_components=dims, whiten=True, random_state=seed).fit(features)
    components = (pca.components_ / np.sqrt(pca.explained_variance_)[:, None]).astype(np.float32)
    quantizer = Quantizer(pca.mean_.astype(np.float32), components, np.zeros((dims, bits), np.float32), method)
    whitened = quantizer.whiten(features)
    rng = np.random.default_rng(seed)
    if method == "lsh":
        quantizer.projection = rng.standard_normal((dims, bits)).astype(np.float32)
        return quantizer
    top = whitened[:, :bits]  # ITQ rotates the leading `bits` principal directions
    rotation = np.linalg.qr(rng.standard_normal((bits, bits)))[0]
    for _ in range(iterations):
        signs = np.where(top @ rotation >= 0, 1.0, -1.0)
        u, _, vt = np.linalg.svd(signs.T @ top)
        rotation = (u @ vt).T
    projection = np.zeros((dims, bits), np.float32)
    projection[:bits] = rotation
    quantizer.projection = projection
    return quantizer
