"""Frozen-backbone feature cache."""

from hashlab.features.cache import cached_features, default_cache_dir

__all__ = ["cached_features", "default_cache_dir"]
