"""Hashing methods: one file each, holding only what makes the method (see base.py)."""

from hashlab.methods.base import HashingModule
from hashlab.methods.dpsh_googlenet import DPSHGoogLeNet

METHODS = {"dpsh_googlenet": DPSHGoogLeNet}

__all__ = ["HashingModule", "DPSHGoogLeNet", "METHODS"]
