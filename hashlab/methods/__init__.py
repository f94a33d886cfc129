"""Hashing methods: one file each, holding only what makes the method (see base.py)."""

from hashlab.methods.base import HashingModule
from hashlab.methods.dfch import DFCH
from hashlab.methods.dpsh_googlenet import DPSHGoogLeNet

METHODS = {"dpsh_googlenet": DPSHGoogLeNet, "dfch": DFCH}

__all__ = ["HashingModule", "DFCH", "DPSHGoogLeNet", "METHODS"]
