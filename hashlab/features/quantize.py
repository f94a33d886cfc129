"""From float descriptors to binary codes, fitted on the indexed collection: PCA whitening, then
ITQ (Gong & Lazebnik, CVPR 2011: the rotation of the PCA space that best matches its sign) or LSH
(random hyperplanes, the baseline ITQ is measured against)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTIZERS = ("itq", "lsh")


@dataclass
class Quantizer:
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (P, D) principal directions
    scale: np.ndarray       # (P,) sqrt of the explained variance, for whitening
    projection: np.ndarray  # (P, bits): ITQ rotation (first `bits` rows) or LSH hyperplanes
    method: str
    whiten_dims: int | None = None  # the leading components re-ranking compares (None: all P)
    fitted_on: int | None = None    # how many descriptors it was fitted on (None: an older file)

    @property
    def bits(self) -> int:
        return self.projection.shape[1]

    def project(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float32) - self.mean) @ self.components.T

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """PCA-whitened, L2-normalised features (what re-ranking compares)."""
        keep = self.whiten_dims or len(self.scale)
        out = self.project(features)[:, :keep] / self.scale[:keep]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def codes(self, features: np.ndarray) -> np.ndarray:
        """+-1 codes (n, bits) of descriptors: the sign of the rotated (ITQ) or hashed (LSH) PCA projection.
        Not whitened: ITQ on whitened projections lost 0.09 precision@10 on CIFAR-10 (docs/search.md)."""
        return np.where(self.project(features) @ self.projection >= 0, 1, -1).astype(np.int8)

    def save(self) -> dict[str, np.ndarray]:
        arrays = {"mean": self.mean, "components": self.components, "scale": self.scale,
                  "projection": self.projection, "method": np.array(self.method)}
        for name in ("whiten_dims", "fitted_on"):
            if getattr(self, name) is not None:
                arrays[name] = np.array(getattr(self, name))
        return arrays

    @classmethod
    def load(cls, arrays) -> Quantizer:
        optional = {name: int(arrays[name]) if name in arrays else None for name in ("whiten_dims", "fitted_on")}
        return cls(arrays["mean"], arrays["components"], arrays["scale"], arrays["projection"], str(arrays["method"]),
                   **optional)  # an older index: every direction whitened, its fitting size unknown


def fit_quantizer(features: np.ndarray, bits: int, method: str = "itq", dims: int = 256, iterations: int = 50,
                  seed: int = 0, whiten_dims: int | None = None) -> Quantizer:
    """``whiten_dims``: how many leading directions re-ranking compares (default: the collection's bound below)."""
    # imported here: a query applies a fitted quantizer, and search starts 1.5 s sooner without sklearn
    from sklearn.decomposition import PCA
    features = np.asarray(features, np.float32)
    if method not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {method!r}; choose one of {', '.join(QUANTIZERS)}")
    if bits > min(features.shape):
        raise ValueError(f"{bits} bits need at least {bits} indexed images and feature dimensions; "
                         f"got {features.shape[0]} images of {features.shape[1]} dimensions")
    dims = max(bits, min(dims, *features.shape))
    pca = PCA(n_components=dims, random_state=seed).fit(features)
    # whitening divides each direction by its spread: over as many directions as there are images it makes every
    # indexed image equidistant from every other (n images span n - 1 directions), and re-ranking ranks at random;
    # over many it amplifies their noise. A thirty-second of the images, at least 16 (CIFAR-10 photos and digit
    # scans, re-ranking's P@10: docs/search.md); 8,192 images or more keep all `dims`
    whiten_dims = min(dims, whiten_dims or max(16, features.shape[0] // 32))
    quantizer = Quantizer(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                          np.sqrt(np.maximum(pca.explained_variance_, 1e-12)).astype(np.float32),
                          np.zeros((dims, bits), np.float32), method, whiten_dims, features.shape[0])
    rng = np.random.default_rng(seed)
    if method == "lsh":
        quantizer.projection = rng.standard_normal((dims, bits)).astype(np.float32)
        return quantizer
    top = quantizer.project(features)[:, :bits]  # ITQ rotates the leading `bits` principal directions
    rotation = np.linalg.qr(rng.standard_normal((bits, bits)))[0]
    for _ in range(iterations):
        signs = np.where(top @ rotation >= 0, 1.0, -1.0)
        u, _, vt = np.linalg.svd(signs.T @ top)
        rotation = (u @ vt).T  # argmax_R tr(B^T V R) over orthogonal R (Procrustes)
    quantizer.projection[:bits] = rotation
    return quantizer
