"""Hashing methods: one file each, holding only what makes the method (see base.py)."""

from hashlab.methods.attribute_hash import AttributeHash
from hashlab.methods.base import HashingModule
from hashlab.methods.dfch import DFCH
from hashlab.methods.dpsh_googlenet import DPSHGoogLeNet
from hashlab.methods.fdh_mfe import FDHMFE

METHODS = {"dpsh_googlenet": DPSHGoogLeNet, "dfch": DFCH, "fdh_mfe": FDHMFE, "attribute_hash": AttributeHash}

__all__ = ["HashingModule", "AttributeHash", "DFCH", "DPSHGoogLeNet", "FDHMFE", "METHODS"]
