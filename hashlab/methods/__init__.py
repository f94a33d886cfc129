"""Hashing methods: one file each, holding only what makes the method (see base.py)."""

from hashlab.methods.attribute_hash import AttributeHash
from hashlab.methods.base import HashingModule
from hashlab.methods.dfch import DFCH
from hashlab.methods.dpsh_googlenet import DPSHGoogLeNet
from hashlab.methods.fdh_mfe import FDHMFE
from hashlab.methods.pooled_itq import CrowITQ, PwaITQ

METHODS = {"dpsh_googlenet": DPSHGoogLeNet, "dfch": DFCH, "fdh_mfe": FDHMFE, "attribute_hash": AttributeHash,
           "crow_itq": CrowITQ, "pwa_itq": PwaITQ}  # the last two: unsupervised baselines, no training

__all__ = ["HashingModule", "AttributeHash", "CrowITQ", "DFCH", "DPSHGoogLeNet", "FDHMFE", "PwaITQ", "METHODS"]
