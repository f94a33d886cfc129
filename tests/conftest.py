import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory):
    """One feature cache for the whole session, never the user's."""
    path = tmp_path_factory.mktemp("feature-cache")
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
