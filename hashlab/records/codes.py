"""codes.npz beside each run record: the evaluated codes, so a run can be re-evaluated or indexed
without its model."""

from __future__ import annotations

from pathlib import Path

CODES_NAME = "codes.npz"


def write_codes(path: Path, model, database_part=None) -> Path:
    """The evaluated query and database codes (bits packed, as sign >= 0), labels and dataset indices,
    gathered over every process, and what each database item was to the model (``database_part``: unseen,
    trained on, or looked at by model selection): what re-evaluation and indexing read without the model or
    the data."""

    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)  # a run without epochs has written nothing yet
    arrays = {}
    for role in ("query", "database"):
        codes, labels, index = model.evaluated_codes[role]
        arrays[f"{role}_codes"] = np.packbits(codes.cpu().numpy() >= 0, axis=1)
        arrays[f"{role}_labels"] = labels.cpu().numpy().astype(np.uint8)
        arrays[f"{role}_index"] = index.cpu().numpy()
    if database_part is not None:
        arrays["database_part"] = np.asarray(database_part, dtype=np.uint8)
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
    """codes.npz -> {role_codes: float tensors of +-1, role_labels, role_index, bits}, and database_part (unseen 0,
    trained on 1, validation 2) when the file has it."""
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
    if "database_part" in data.files:
        out["database_part"] = data["database_part"]
    return out
