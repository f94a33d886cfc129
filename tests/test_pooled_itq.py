"""The unsupervised table baselines (crow_itq, pwa_itq): a real closed-form fit on the embedded digits,
evaluated like every method, with codes equal to the search index's quantizer on the same features."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hashlab.methods import CrowITQ
from hashlab.records.codes import read_codes
from hashlab.runs.fit import run_fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method", ["crow_itq", "pwa_itq"])
def test_pooled_itq_fits_without_epochs_and_beats_chance(method, tmp_path):
    record_path = run_fit(["--config", str(ROOT / f"experiments/methods/{method}.yaml"), "--profile", "demo", f"--runs_dir={tmp_path}",
                           "--model.bits=16"])
    record = json.loads(record_path.read_text())
    assert record["method"] == method and record["epochs"] == 0
    assert record["evaluated_checkpoint"]["selection"].startswith("no epochs")
    assert record["metrics"]["map"] > 0.3  # 10 balanced classes: chance is about 0.1
    codes = read_codes(record_path.parent / record["codes_file"])
    assert len(np.unique(codes["database_codes"], axis=0)) > 50  # not a constant code


def test_its_projection_is_the_search_quantizers():
    from hashlab.features.quantize import fit_quantizer
    from hashlab.methods.pooled_itq import fit_itq
    rng = np.random.default_rng(0)
    features = rng.standard_normal((400, 40)).astype(np.float32) @ rng.standard_normal((40, 40)).astype(np.float32)
    model = CrowITQ(bits=16, backbone_pretrained=False)
    quantizer = fit_quantizer(features, 16, "itq")
    fit_itq(model.head, features, 16)
    with torch.no_grad():
        ours = np.where(model.head(torch.as_tensor(features)).numpy() >= 0, 1, -1)
    np.testing.assert_array_equal(ours, quantizer.codes(features))
