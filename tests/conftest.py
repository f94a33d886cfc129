import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"

# `make test` runs the suite in one pytest-xdist worker per core. Each worker's torch, and every process it starts,
# gets its share of the cores: OpenMP threads of several workers on the same cores spin against each other
# (measured: twice the CPU time for the same tests).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(variable, share)


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory):
    """One feature cache for the whole session, never the user's; shared by the xdist workers (the cache is
    safe for concurrent processes, and a second worker then finds what the first computed)."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "feature-cache"
    path.mkdir(exist_ok=True)
    os.environ["HASHLAB_CACHE"] = str(path)
    return path


@pytest.fixture(autouse=True)
def in_repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # configs are referenced relative to the project


@pytest.fixture(autouse=True)
def split_files(tmp_path_factory, monkeypatch):
    """Each test writes its split files to its own folder, never into the repository."""
    path = tmp_path_factory.mktemp("splits")
    monkeypatch.setenv("HASHLAB_SPLITS", str(path))
    return path
