"""Adding a method is one file of its own (and its config): a toy method written to a temporary folder, outside
the package, registers itself on import and runs through a table like any other; the tuning list and the
rendered table pick it up with nothing else edited."""

import sys
import textwrap

import pandas as pd
import yaml

from hashlab.methods import METHODS
from hashlab.runs.campaign import tuned_methods
from hashlab.runs.tables import render_table, reproduce_table

TOY = '''
"""toy_hash: half the squared distance of similar pairs and a hinge on dissimilar ones (a test's method)."""
from hashlab.losses import contrastive_hamming_loss, label_overlap_similarity
from hashlab.methods import HashingModule


class ToyHash(HashingModule):
    method_id = "toy_hash"
    display_name = "ToyHash"

    def __init__(self, *args, margin: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)

    def hash_loss(self, codes, labels, features, indices):
        loss = contrastive_hamming_loss(codes, label_overlap_similarity(labels, labels),
                                        self.hparams.margin * self.bits)
        return loss, {"pairs": loss}
'''


def test_a_method_in_its_own_file_registers_itself_and_runs_through_a_table(tmp_path, monkeypatch):
    (tmp_path / "toy_hash.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    # its config says only what is its own: the project's demo profile gives the rest
    (tmp_path / "experiments" / "methods").mkdir(parents=True)
    (tmp_path / "experiments" / "methods" / "toy_hash.yaml").write_text(textwrap.dedent("""\
        model.class_path: toy_hash.ToyHash
        model.margin: {value: 0.5, from: "ours"}
        demo:
          trainer.max_epochs: 3
        """))
    spec = yaml.safe_load(open("experiments/tables/demo.yaml"))
    spec.update(name="toy", bits=[16], curves_at_bits=16,
                methods=[{"name": "toy_hash", "config": f"{tmp_path}/experiments/methods/toy_hash.yaml --profile demo"}])
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(spec))
    try:
        reproduce_table(str(tmp_path / "toy.yaml"), runs_dir=tmp_path / "runs")
        assert "toy_hash" in METHODS and METHODS["toy_hash"].kind == "deep"  # registered by its import alone
        # a deep method of a planned table is tuned before its cells
        assert "toy_hash" in tuned_methods({"stages": [{"tables": [str(tmp_path / "toy.yaml")]}]})
        out = render_table(str(tmp_path / "toy.yaml"), runs_dir=tmp_path / "runs", reports_dir=tmp_path / "reports")
        frame = pd.read_csv(tmp_path / "reports" / "toy" / "table.csv")
        assert frame["map"].iloc[0] > 0.3  # ten classes: chance is about 0.1
        assert "ToyHash" in (tmp_path / "reports" / "toy" / "table.tex").read_text()
        assert "toy_hash" in out["markdown"]
    finally:
        from hashlab.methods import base
        base._REGISTRY.pop("toy_hash", None)  # the registry outlives this test's temporary folder
        sys.modules.pop("toy_hash", None)
