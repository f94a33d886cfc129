"""Hashing methods: one file each, holding only what makes the method (see base.py).

A method registers itself: a subclass of HashingModule with a ``method_id`` (and its ``kind``) is in METHODS as
soon as its module is imported, and every module of this package is imported here, so a new method is one new
file. The CLI, the campaign's tuning list, the tests and the docs read METHODS; nothing else lists methods.
"""

import importlib
import pkgutil

from hashlab.methods.base import HashingModule, registered_methods

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

METHODS = registered_methods()
globals().update({cls.__name__: cls for cls in METHODS.values()})  # class paths: hashlab.methods.<Class>

__all__ = ["HashingModule", "METHODS", *(cls.__name__ for cls in METHODS.values())]
