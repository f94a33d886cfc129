"""Backbones: a registry of ImageNet CNNs with stage access (see registry.py)."""

from hashlab.backbones.registry import Backbone, available_backbones, create_backbone, register_backbone

__all__ = ["Backbone", "available_backbones", "create_backbone", "register_backbone"]
