"""hashlab"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hashlab")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "unknown"
