"""Every bad input of docs/errors.md, tried as a new user would: one line that names the file, the field
and the fix, no traceback, and no finished work lost."""

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from hashlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["experiments/methods/dfch.yaml", "--profile", "smoke"]
DEMO = ["experiments/methods/dpsh_googlenet.yaml", "--profile", "demo"]


def fails_with(args: list[str], pattern: str, capsys) -> str:
    """The command exits with one `error:` line matching ``pattern`` and prints no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    message = str(exit_info.value.code)
    out = capsys.readouterr()
    assert message.startswith("error: ") and "\n" not in message.strip(), message
    printed = (out.err + out.out).split("--- Logging error ---")[0]  # pytest's capture closes logging's stream
    assert "Traceback" not in printed
    import re
    assert re.search(pattern, message), message
    return message


def test_missing_or_empty_data_root(tmp_path, capsys):
    fails_with(["fit", "--config", *SMOKE, f"--data.root={tmp_path}/absent"],
               r"cifar10: folder .*absent does not exist. Pass --data.root", capsys)
    (tmp_path / "empty").mkdir()
    fails_with(["fit", "--config", *SMOKE, f"--data.root={tmp_path}/empty"], r"cifar10: .*empty", capsys)


def test_a_data_root_one_level_too_deep_is_named_with_its_parent(tmp_path, capsys):
    """`reproduce --data-root .../cifar10` (the data set's own folder, not the folder holding it): the cells say so,
    with the root to pass, not that the data is missing. Told by the folder's name, or by the loader reading it."""
    from hashlab.data.cifar10 import CLASSES
    cifar = tmp_path / "cifar10"
    for part in ("train", "test"):  # the image-folder layout the CIFAR-10 loader reads: one image per class
        for name in CLASSES:
            (cifar / part / name).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(cifar / part / name / "0.png")
    renamed = tmp_path / "my_cifar"
    renamed.symlink_to(cifar)
    args = ["reproduce", "--table", "table2", "--dry-run", "--datasets", "cifar10", "--methods", "dpsh_googlenet",
            "--runs-dir", str(tmp_path / "runs")]
    main([*args, "--data-root", str(cifar)])
    out = capsys.readouterr().out
    assert f"--data-root {cifar} is itself the cifar10 folder: pass its parent, --data-root {tmp_path}" in out
    assert "has no cifar10/ folder" not in out
    main([*args, "--data-root", str(renamed)])
    out = capsys.readouterr().out
    assert (f"--data-root {renamed} is itself a cifar10 folder (hashlab.data.CIFAR10 reads it), but a data root holds "
            f"each data set in a folder of its name: link it there (ln -s {renamed} {tmp_path / 'cifar10'}) and pass "
            f"--data-root {tmp_path}") in out
    main([*args, "--data-root", str(tmp_path)])  # the right root: the cells are to run
    assert "0 missing data" in capsys.readouterr().out


def test_a_malformed_list_file_line_is_named_by_file_and_line(tmp_path, capsys):
    from tests.test_datasets import write_lists
    write_lists(tmp_path)
    lines = (tmp_path / "train.txt").read_text().splitlines()
    lines[2] = "images/012.jpg 1 0 x 0 0"
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    fails_with(["fit", "--config", *DEMO, "--data=hashlab.data.ListFile", f"--data.root={tmp_path}"],
               r"train\.txt, line 3: labels must be 0/1 integers", capsys)


def test_labels_out_of_range_are_named(tmp_path, capsys):
    from tests.test_datasets import write_cub200
    base = write_cub200(tmp_path)
    labels = (base / "image_class_labels.txt").read_text().splitlines()
    labels[0] = labels[0].split()[0] + " 9"  # classes.txt has 4 classes
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    fails_with(["data", "describe", "cub200", "--root", str(tmp_path)],
               r"image_class_labels\.txt: image 1 has class 9, which .*classes\.txt does not list", capsys)


@pytest.mark.parametrize("args,pattern", [
    (["fit", "--config", *DEMO, "--model.init_args.backbone=efficientnet_lite"],
     r"unknown backbone 'efficientnet_lite' \(did you mean 'efficientnet_lite0', 'efficientnet_lite1' or "
     r"'efficientnet_lite2'\?\)"),
    (["fit", "--config", *DEMO, "--model.init_args.backbone=efficientnet_lite3"],
     r"unknown backbone 'efficientnet_lite3' \(did you mean 'efficientnet_lite0', 'efficientnet_lite1' or "
     r"'efficientnet_lite2'\?\)"),
    (["fit", "--config", *DEMO, "--model.init_args.backbone=resnet_18"], r"\(did you mean 'resnet18'\?\)"),
    (["fit", "--config", *DEMO, "--data.init_args.protocol=digit"], r"unknown protocol 'digit' \(did you mean 'digits'\?\)"),
    (["reproduce", "--table", "tabel2"], r"no table spec .*tabel2\.yaml \(did you mean 'table2'\?\)"),
    (["reproduce", "--table", "demo", "--methods", "dpsh_googlenet_"],
     r"--methods \['dpsh_googlenet_'\] \(did you mean 'dpsh_googlenet'\?\)"),
    (["fit", "--config", *DEMO, "--model.init_args.bits=0"], r"model\.bits = 0: choose a code length between 4"),
    (["fit", "--config", *DEMO, "--model.init_args.bits=500"], r"model\.bits = 500"),
])
def test_unknown_names_and_values_out_of_range(args, pattern, capsys, tmp_path):
    fails_with([*args, *([f"--runs_dir={tmp_path}"] if args[0] == "fit" else [])], pattern, capsys)


def test_an_unknown_class_or_option_is_one_line_with_the_closest_name(capsys):
    """jsonargparse's own report of these is a page (usage, a Union's subtypes, the given value)."""
    fails_with(["fit", "--config", *DEMO, "--model=hashlab.methods.DPSHGoogleNet"],
               r"^error: --model: hashlab.methods has no class 'DPSHGoogleNet' \(did you mean 'DPSHGoogLeNet'\?\)$", capsys)
    fails_with(["fit", "--config", *DEMO, "--model.bitz=16"],
               r"--model.bitz: DPSHGoogLeNet takes no option 'bitz' \(did you mean 'bits'\?\); add --print_config", capsys)
    fails_with(["fit", "--config", *DEMO, "--data.init_args.protocl=digits"],
               r"--data.protocl: Digits takes no option 'protocl' \(did you mean 'protocol'\?\)", capsys)
    fails_with(["fit", "--config", *DEMO, "--nonsense=1"], r"unrecognized arguments: --nonsense=1", capsys)
    fails_with(["fit", "--config", *DEMO, "--model.bits=abc"], r"--model.bits: Expected a <class 'int'>. Got value: abc",
               capsys)
    fails_with(["fit", "--config", *DEMO, "--data=hashlab.data.Cifar10"],
               r"--data: hashlab.data has no class 'Cifar10' \(did you mean 'CIFAR10'\?\)", capsys)
    fails_with(["fit", "--config", *DEMO, "--model=DPSHGoogleNet"], r"did you mean 'DPSHGoogLeNet'", capsys)


def test_an_image_size_below_the_backbone_stride(tmp_path, capsys):
    fails_with(["fit", "--config", *DEMO, "--data.init_args.image_size=16", f"--runs_dir={tmp_path}"],
               r"data\.image_size = 16: efficientnet_lite0 needs at least 32 px", capsys)


def test_a_sweep_with_an_unknown_parameter(tmp_path, capsys):
    sweep = {"name": "typo", "method": "grid", "metric": {"name": "val/map", "goal": "maximize"},
             "parameters": {"table": {"value": "demo"}, "bitz": {"values": [16]}},
             "command": ["${env}", "hashlab", "cell", "--wandb", "${args}"]}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(sweep))
    fails_with(["sweep", "local", str(path)], r"unknown sweep parameter 'bitz' \(did you mean 'bits'\?\)", capsys)


def test_a_table_spec_with_a_typo(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["bitz"] = spec.pop("bits")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(spec))
    fails_with(["reproduce", "--table", str(path)], r"unknown field 'bitz' \(did you mean 'bits'\?\)", capsys)


def test_a_table_spec_that_is_empty_broken_or_of_the_wrong_shape(tmp_path, capsys):
    """Each was a traceback (AttributeError, a YAML parser's, TypeError, KeyError) from deep in the table's code."""
    text = (ROOT / "experiments/tables/demo.yaml").read_text()
    spec = yaml.safe_load(text)
    no_config = {**spec, "methods": [{k: v for k, v in spec["methods"][0].items() if k != "config"}]}
    for name, content, message in [
            ("empty", "", r"empty.yaml: expected a mapping of fields .*found nothing"),
            ("broken", text.replace("seeds: [0]", "seeds: [0"), r"broken.yaml: not valid YAML"),
            ("scalar_bits", yaml.safe_dump({**spec, "bits": 32}), r"bits: 32 is not a list of whole numbers; write e.g."),
            ("no_config", yaml.safe_dump(no_config),
             r"method 'dpsh_googlenet' has no config: give its method file, e.g. config: experiments/methods/")]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(content)
        fails_with(["reproduce", "--table", str(path)], message, capsys)


def bomb_png(side: int = 20_000) -> bytes:
    """A valid PNG header for side x side pixels with a tiny compressed body: a few KB that would decode
    to 1.2 GB of pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\x00" * (side * 3)
    body = zlib.compress(row * 64, 9)  # only the first rows: the header alone says how big it is
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    from hashlab.data.digits import write_digit_images
    from hashlab.search.build import build_index
    from hashlab.search.encoders import UnsupervisedEncoder
    root = tmp_path_factory.mktemp("index")
    write_digit_images(root / "images", count=30)
    build_index(root / "images", root / "index", UnsupervisedEncoder("crow", 16, image_size=32), progress=False)
    return root


@pytest.mark.parametrize("kind", ["not_an_image", "truncated", "bomb"])
def test_search_cli_names_a_bad_query_image(small_index, tmp_path, kind, capsys):
    path = tmp_path / f"{kind}.png"
    if kind == "not_an_image":
        path.write_text("hello, I am text")
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        path.write_bytes(buffer.getvalue()[:300])
    else:
        path.write_bytes(bomb_png())
        assert path.stat().st_size < 100_000
    fails_with(["search", "--index", str(small_index / "index"), str(path)],
               rf"cannot decode query image .*{kind}\.png", capsys)


def test_an_index_whose_run_changed_since_it_was_built(tmp_path, capsys):
    """A run rerun after its index was built would encode queries with another model: refused, named."""
    from hashlab.data.digits import write_digit_images
    from hashlab.io import write_json_atomic
    from hashlab.records.record import read_record
    from hashlab.runs.fit import run_fit
    record = run_fit(["--config", *DEMO, "--trainer.max_epochs=1", f"--runs_dir={tmp_path}", "--model.bits=8"])
    paths = write_digit_images(tmp_path / "images", count=20)
    main(["index", "build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "index"),
          "--run", str(record.parent)])
    changed = read_record(record)
    changed["finished_at"] = "later"  # as a rerun with --force true would leave it
    write_json_atomic(record, changed)
    capsys.readouterr()
    fails_with(["search", "--index", str(tmp_path / "index"), str(paths[0])],
               r"its codes were made by run .* but that run is now .*Rebuild the index", capsys)
    # the advice works: the rebuild encodes every image again with the run as it is now
    main(["index", "build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "index"),
          "--run", str(record.parent)])
    assert "(20 encoded, 0 reused" in capsys.readouterr().out
    main(["search", "--index", str(tmp_path / "index"), str(paths[0]), "--json"])


def test_rescore_check_of_a_missing_folder_or_a_record_without_its_figures(tmp_path, capsys):
    """`hashlab rescore --check`: a mistyped folder is not "0 of 0 records agree" (exit 0), and a record that lacks the
    figures it checks is named with the field, not a KeyError; the other records are still checked."""
    fails_with(["rescore", "--check", str(tmp_path / "absent")], rf"^error: {tmp_path / 'absent'}: no such folder",
               capsys)
    fails_with(["rescore", "--check", str(tmp_path)], rf"^error: {tmp_path}: no record\.json in it or below", capsys)
    fails_with(["rescore", str(tmp_path / "absent")], rf"^error: {tmp_path / 'absent'}: no such folder", capsys)
    committed = next((ROOT / "reports" / "table2" / "records").rglob("record.json"))
    for name, drop in (("no_metrics", "metrics"), ("no_map_stable", "map_stable")):
        record = json.loads(committed.read_text())
        del (record if drop == "metrics" else record["metrics"])[drop]
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(json.dumps(record))
    fails_with(["rescore", "--check", str(tmp_path / "no_metrics")],
               r"^error: 1 record could not be checked: .*no_metrics/record\.json has no field 'metrics': restore it",
               capsys)
    message = fails_with(["rescore", "--check", str(tmp_path)], r"^error: 2 records could not be checked: ", capsys)
    assert message.endswith(f"{tmp_path / 'no_map_stable' / 'record.json'} has no field 'metrics.map_stable': restore "
                            f"it from git, or recompute its metrics from its codes with `hashlab rescore "
                            f"{tmp_path / 'no_map_stable'}` (and 1 more, marked 'not checked' above)"), message
    (tmp_path / "cut" / "run").mkdir(parents=True)
    (tmp_path / "cut" / "run" / "record.json").write_text('{"status": "finished", "metr')  # cut short
    fails_with(["rescore", "--check", str(tmp_path / "cut")], r"cut/run/record\.json is not valid JSON .*delete it",
               capsys)


def test_tune_of_an_unknown_or_untrainable_method_fails_at_once(tmp_path, capsys):
    """`hashlab tune dpsh_googlenett --dry-run` planned 16 trials and exited 0, hinting to add the method's row to
    table2.yaml; every mode of tune now stops on a name that is not a deep method, with the closest and the list."""
    from hashlab.methods import METHODS
    deep = ", ".join(name for name, cls in METHODS.items() if cls.kind == "deep")
    for mode in (["--dry-run"], ["--write-sweep"], []):
        fails_with(["tune", "dpsh_googlenett", *mode, "--runs-dir", str(tmp_path / "runs"), "--reports-dir",
                    str(tmp_path / "reports")],
                   rf"^error: unknown method 'dpsh_googlenett' \(did you mean 'dpsh_googlenet'\?\); tuning is for the "
                   rf"deep methods: {deep}$", capsys)
    assert not (ROOT / "sweeps" / "tune-dpsh_googlenett.yaml").exists() and not (tmp_path / "runs").exists()
    fails_with(["tune", "itq", "--dry-run"], rf"^error: itq is a closed-form method, with no epochs to tune; tuning is "
               rf"for the deep methods: {deep}$", capsys)


def test_the_errors_doc_lists_every_case():
    doc = (ROOT / "docs" / "errors.md").read_text()
    for case in ("data root", "truncated JPEG", "list-file line", "labels out of range", "unknown method",
                 "bits out of range", "image size", "sweep", "table spec", "decompression bomb",
                 "query encoder", "disk", "checkpoint", "record", "lock", "non-finite"):
        assert case.lower() in doc.lower(), case


def test_a_cli_subprocess_prints_no_traceback_for_a_bad_value(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hashlab.cli", "fit", "--config", *DEMO, "--model.init_args.bits=0",
                           f"--runs_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: model.bits = 0")


def test_a_misspelt_option_in_a_method_file_names_the_file_that_sets_it(tmp_path, capsys):
    """The option was reported as if typed (`--model.alphaa: ...`); a method file's key says where it is written."""
    method = tmp_path / "methods" / "dsh.yaml"
    method.parent.mkdir()
    method.write_text("data.class_path: hashlab.data.Digits\ncpu:\n  model.alphaa: 0.1\n")
    fails_with(["fit", "--config", str(method), "--profile", "cpu"],
               rf"^error: --model.alphaa: DSH takes no option 'alphaa' \(did you mean 'alpha'\?\); .* \(set in "
               rf"{method} \(cpu\)\)$", capsys)
    method.write_text("data.class_path: hashlab.data.Digits\ncpu:\n  model.alpha: 0.1\n")
    message = fails_with(["fit", "--config", str(method), "--profile", "cpu", "--model.betaa=1"], "betaa", capsys)
    assert "set in" not in message  # typed on the command line: nothing to point at


def test_a_first_index_build_that_fails_leaves_no_folder(tmp_path, capsys):
    """`index build` of a folder with no image stops with its error; the index folder it had just made (holding only
    its lock file) looked like an index left half-built."""
    (tmp_path / "empty").mkdir()
    fails_with(["index", "build", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "idx")],
               "no decodable image under", capsys)
    assert not (tmp_path / "idx").exists()
