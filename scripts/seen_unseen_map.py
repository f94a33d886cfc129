"""How much of a cell's mAP@all comes from database images the model trained on. From the committed codes of
table 2's CIFAR-10 cells (cifar10-1, seed 0), nothing retrained: mAP@all against the whole 59,000-image
database, against its 5,000 training images only (the database our validation retrieves from) and against
the 54,000 images no model saw. docs/reproduce.md quotes the output.

    .venv/bin/python scripts/seen_unseen_map.py --data-root ../shared/data [--bits 48]
"""

import argparse
import glob
from pathlib import Path

import numpy as np

from hashlab.data import CIFAR10
from hashlab.evaluation.metrics import mean_average_precision
from hashlab.records.codes import read_codes

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-root", required=True, help="the folder holding cifar10/")
parser.add_argument("--bits", type=int, default=48)
args = parser.parse_args()

data = CIFAR10(root=str(Path(args.data_root) / "cifar10"), protocol="cifar10-1")
data.prepare()  # the protocol's split, as every cell drew it (same seed)
trained_on = np.zeros(len(data.source.items), bool)
trained_on[np.asarray(data.split.train)] = True
print(f"{'method':<16}{'all 59,000':>11}{'5,000 trained on':>18}{'54,000 unseen':>15}{'drop':>7}")
for path in sorted(glob.glob(f"reports/table2/records/*/cifar10-cifar10-1/*-{args.bits}b-seed0-*/codes.npz")):
    codes = read_codes(path)
    seen = trained_on[codes["database_index"].numpy()]
    maps = [mean_average_precision(codes["query_codes"], codes["database_codes"][mask], codes["query_labels"],
                                   codes["database_labels"][mask]) for mask in (np.ones_like(seen), seen, ~seen)]
    method = Path(path).parents[2].name
    print(f"{method:<16}{maps[0]:>11.3f}{maps[1]:>18.3f}{maps[2]:>15.3f}{maps[1] - maps[2]:>7.3f}", flush=True)
