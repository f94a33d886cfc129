"""codes.npz beside each run record: the evaluated codes, so a run can be re-evaluated or indexed
without its model."""

from __future__ import annotations

from pathlib import Path

CODES_NAME = "codes.npz"


def write_codes(path: Path, model, database_seen=None) -> Path:
    """The evaluated query and database codes (bits packed, as sign >= 0), labels and dataset indices,
    gathered over every process, and which database items the model trained on (``database_seen``): what
    re-evaluation and indexing read without the model or the data."""

    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)  # a run without epochs has written nothing yet
    arrays = {}
    for role in ("query", "database"):
        codes, labels, index = model.evaluated_codes[role]
        arrays[f"{role}_codes"] = np.packbits(codes.cpu().numpy() >= 0, axis=1)
        arrays[f"{role}_labels"] = labels.cpu().numpy().astype(np.uint8)
        arrays[f"{role}_index"] = index.cpu().numpy()
    if database_seen is not None:
        arrays["database_seen"] = np.packbits(np.asarray(database_seen, dtype=bool))
    from hashlab.io import atomic_path
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, bits=np.array(model.bits), **arrays)
    return path


def check_codes(path: Path) -> None:
    """A missing codes file is allowed (records from before codes.npz); one that does not read to the end
    (cut short by a kill or a full disk) raises ValueError naming it."""
    import zipfile

    import numpy as np
    if not path.exists():
        return
    try:
        with np.load(path) as data:
            for name in data.files:
                data[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"codes file {path} cannot be read ({type(error).__name__}: {error}); delete the run "
                         "folder's record.json and codes.npz to rerun that cell") from error


def read_codes(path: str | Path) -> dict:
    """codes.npz -> {role_codes: float tensors of +-1, role_labels, role_index, bits}, and database_seen (a bool
    array) when the file has it."""
    import numpy as np
    import torch
    data = np.load(path)
    bits = int(data["bits"])
    out = {"bits": bits}
    for role in ("query", "database"):
        unpacked = np.unpackbits(data[f"{role}_codes"], axis=1)[:, :bits].astype(np.float32) * 2 - 1
        out[f"{role}_codes"] = torch.from_numpy(unpacked)
        out[f"{role}_labels"] = torch.from_numpy(data[f"{role}_labels"])
        out[f"{role}_index"] = torch.from_numpy(data[f"{role}_index"])
    if "database_seen" in data.files:
        out["database_seen"] = np.unpackbits(data["database_seen"], count=len(out["database_index"])).astype(bool)
    return out
