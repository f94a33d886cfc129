"""Hashing methods: one file each, holding only what makes the method (see base.py)."""

from hashlab.methods.adsh import ADSH
from hashlab.methods.attribute_hash import AttributeHash
from hashlab.methods.base import HashingModule
from hashlab.methods.csq import CSQ
from hashlab.methods.dch import DCH
from hashlab.methods.dfch import DFCH
from hashlab.methods.dpsh import DPSH
from hashlab.methods.dpsh_googlenet import DPSHGoogLeNet
from hashlab.methods.dsh import DSH
from hashlab.methods.fdh_mfe import FDHMFE
from hashlab.methods.greedyhash import GreedyHash
from hashlab.methods.hashnet import HashNet
from hashlab.methods.itq import ITQ
from hashlab.methods.lsh import LSH
from hashlab.methods.pooled_itq import CrowITQ, PwaITQ
from hashlab.methods.sdh import SDH

# the four seed methods, then the baselines every hashing table has: shallow (closed form, no epochs),
# deep, and the unsupervised pooled-feature codes of image search
METHODS = {"dpsh_googlenet": DPSHGoogLeNet, "dfch": DFCH, "fdh_mfe": FDHMFE, "attribute_hash": AttributeHash,
           "lsh": LSH, "itq": ITQ, "sdh": SDH,
           "dpsh": DPSH, "dsh": DSH, "hashnet": HashNet, "dch": DCH, "csq": CSQ, "adsh": ADSH, "greedyhash": GreedyHash,
           "crow_itq": CrowITQ, "pwa_itq": PwaITQ}

__all__ = ["HashingModule", "METHODS", *(cls.__name__ for cls in METHODS.values())]
