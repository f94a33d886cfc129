"""Configs composed from what differs: a profile file says what every method of a profile shares, a method file
says only what is the method's, and a tuning writes its choice to a file of its own.

    experiments/profiles/<profile>.yaml   settings for every method, then a section per kind (deep, closed-form, ...)
    experiments/methods/<method>.yaml     settings for every profile, then a section per profile the method runs in
    experiments/tuned.yaml                written by `hashlab tune`: per method and profile, the values chosen

A setting is dotted ("model.lr", "data.batch_size", "trainer.max_epochs") and maps to a value, or to
``{value: ..., from: "..."}`` where its provenance is worth saying ("paper: ...", "ours: ..."; the docs' tables
read these labels). Later layers win: the profile (every method, then the method's kind) < the method file (every
profile, then the profile's section) < its tuned values; what no layer sets is the class's default. A
`hashlab fit` command line names a method file and a profile (``--config experiments/methods/dsh.yaml --profile
cpu``); :func:`expand_args` turns that into the one complete config LightningCLI reads.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from hashlab.errors import HashlabError, yaml_problem

KINDS = ("deep", "closed-form", "unsupervised")
SECTIONS = ("seed_everything", "model", "data", "trainer")
TUNED_NAME = "tuned.yaml"  # beside methods/ and profiles/
PROFILES_DIR = Path("experiments/profiles")


class ConfigError(HashlabError):
    pass


def _read(path: Path) -> dict:
    """The file's mapping, parsed once per content (a table's cells read each method file many times); keyed by the
    text, not the modification time, which two quick writes can share."""
    return _parsed(str(path), Path(path).read_text())


@lru_cache(maxsize=256)
def _parsed(path: str, text: str) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(error)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, found {type(data).__name__}")
    return data


def is_method_file(path: str | Path) -> bool:
    """A method file has dotted settings and profile sections; a complete LightningCLI config has model, data and
    trainer sections (both may set seed_everything)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    data = _read(path)
    return bool(data) and not (set(data) & {"model", "data", "trainer"})


def _setting(key: str) -> bool:
    return "." in key or key == "seed_everything"


def _shared(data: dict) -> dict:
    """The file's top-level settings (for every profile, or every method), apart from its sections."""
    return {k: v for k, v in data.items() if _setting(k)}


def method_profiles(path: str | Path) -> list[str]:
    return [name for name in _read(Path(path)) if not _setting(name)]


def _split(section: dict, where: str) -> tuple[dict, dict]:
    """{setting: value}, {setting: provenance label} of one section."""
    values, labels = {}, {}
    for key, entry in (section or {}).items():
        if key in SECTIONS and isinstance(entry, dict):  # LightningCLI's nesting, which a method file does not use
            example = next(iter(entry), "lr")
            raise ConfigError(f"{where}: setting {key!r} is nested; a method file writes dotted keys, "
                              f"e.g. {key}.{example}: ... (a complete LightningCLI config with model:, data: and "
                              "trainer: sections at the top goes to --config as it is)")
        if key.split(".")[0] not in SECTIONS:
            raise ConfigError(f"{where}: setting {key!r} names no section; settings are dotted under "
                              f"{', '.join(SECTIONS)} (model.lr, data.batch_size, trainer.max_epochs)")
        if isinstance(entry, dict) and "value" in entry:
            unknown = set(entry) - {"value", "from"}
            if unknown:
                raise ConfigError(f"{where}: setting {key!r} has {sorted(unknown)}; a labelled setting is "
                                  "{value: ..., from: \"paper: ...\"}")
            values[key] = entry["value"]
            if entry.get("from"):
                labels[key] = entry["from"]
        elif isinstance(entry, dict) and "from" in entry and len(entry) == 1:
            labels[key] = entry["from"]  # a label for a value a lower layer sets
        else:
            values[key] = entry
    return values, labels


def _layers(path: Path, profile: str, kind: str) -> list[tuple[str, dict]]:
    method = _read(path)
    for name, entry in method.items():  # a top-level key is a dotted setting or a profile's section of them
        if not _setting(name) and not isinstance(entry, dict | None):
            head, _, rest = name.partition("_")
            dotted = f"{head}.{rest}" if head in SECTIONS and rest else f"model.{name}"
            raise ConfigError(f"{path}: top-level key {name!r} is neither a setting (dotted: {dotted}: {entry!r}) "
                              "nor a profile section (a mapping of settings, like cpu:); as it is, no run would read it")
    if profile not in method:
        raise ConfigError(f"{path} has no profile {profile!r}; its profiles are "
                          f"{', '.join(method_profiles(path)) or 'none'}")
    profile_path = _profiles_dir(path) / f"{profile}.yaml"
    shared = _read(profile_path) if profile_path.exists() else {}
    unknown = {k for k in shared if not _setting(k)} - set(KINDS) - {"description"}
    if unknown:
        raise ConfigError(f"{profile_path}: unknown section(s) {sorted(unknown)}; a profile has a description, "
                          f"settings for every method, then one section per kind of method ({', '.join(KINDS)})")
    tuned_path = path.parent.parent / TUNED_NAME
    tuned = (_read(tuned_path) if tuned_path.exists() else {}).get(path.stem) or {}
    return [(f"{profile_path}", _shared(shared)), (f"{profile_path} ({kind})", shared.get(kind)),
            (f"{path}", _shared(method)), (f"{path} ({profile})", method.get(profile)),
            (f"{tuned_path} ({path.stem}, {profile})", tuned.get(profile))]


def set_in(args: list[str], key: str) -> str:
    """Which file of a method file's composition sets ``key`` (model.lr), as ' (set in FILE (SECTION))', for an error
    about an option the user did not type; '' when the command line has no method file or no layer sets it."""
    config = profile = None
    for i, arg in enumerate(args):
        if arg in ("--config", "--profile") and i + 1 < len(args):
            config, profile = (args[i + 1], profile) if arg == "--config" else (config, args[i + 1])
        elif arg.startswith(("--config=", "--profile=")):
            name, value = arg[2:].split("=", 1)
            config, profile = (value, profile) if name == "config" else (config, value)
    if config is None or profile is None or not is_method_file(config) or profile not in _read(Path(config)):
        return ""
    _, cls = _method_class(Path(config))
    found = [where for where, section in _layers(Path(config), profile, cls.kind) if key in (section or {})]
    return f" (set in {found[-1]})" if found else ""


def _profiles_dir(path: Path) -> Path:
    """experiments/profiles beside the folder of a method file (or table spec); a file in a user's own folder takes
    the project's."""
    beside = path.parent.parent / "profiles"
    return beside if beside.is_dir() else PROFILES_DIR


def profile_description(profile: str, beside: str | Path) -> str:
    """The profile file's one-sentence ``description`` (what a table's caption says its cells ran with); ``beside``:
    a file in a folder next to profiles/ (a method file or a table spec)."""
    path = _profiles_dir(Path(beside)) / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(f"{beside}: profile {profile!r} has no file {path}; the profiles are "
                          f"{', '.join(sorted(p.stem for p in path.parent.glob('*.yaml'))) or 'none'}")
    text = _read(path).get("description")
    if not text:
        raise ConfigError(f"{path}: no description; add `description: <backbone, input, schedule in a sentence>` "
                          "(the caption of a table run in this profile says it)")
    return " ".join(str(text).split())


def method_class_path(method_id: str) -> str:
    from hashlab.methods import METHODS
    if method_id not in METHODS:
        from hashlab.errors import close_matches
        raise ConfigError(f"experiments/methods/{method_id}.yaml: no registered method {method_id!r}"
                          f"{close_matches(method_id, list(METHODS))}; the file's name is the method's id")
    cls = METHODS[method_id]
    package = "hashlab.methods"
    return f"{package}.{cls.__name__}" if cls.__module__.startswith(package + ".") else f"{cls.__module__}.{cls.__name__}"


def _method_class(path: Path) -> tuple[str, type]:
    """The method's class path and class: the registry's entry for the file's name, or the class a file of a
    method outside the package names (``model.class_path: my_module.MyHash``), imported here so it registers."""
    from hashlab.objects import class_of
    given = _read(path).get("model.class_path")
    if given:
        return given, class_of(given)
    from hashlab.methods import METHODS
    class_path = method_class_path(path.stem)
    return class_path, METHODS[path.stem]


@lru_cache(maxsize=256)
def _composed(path: str, profile: str, stamp: str) -> tuple[dict, dict, dict]:
    class_path, cls = _method_class(Path(path))
    values: dict = {}
    labels: dict = {}
    for where, section in _layers(Path(path), profile, cls.kind):
        layer_values, layer_labels = _split(section, where)
        values.update(layer_values)
        labels.update(layer_labels)
    values.pop("model.class_path", None)
    settings = dict(values)
    config: dict = {"seed_everything": values.pop("seed_everything", 0),
                    "model": {"class_path": class_path, "init_args": {}}}
    for key, value in values.items():
        section, name = key.split(".", 1)
        if section in ("model", "data"):
            entry = config.setdefault(section, {"init_args": {}})
            if name == "class_path":
                entry["class_path"] = value
            else:
                entry["init_args"][name] = value
        else:
            config.setdefault(section, {})[name] = value
    if "data" in config and "class_path" not in config["data"]:
        raise ConfigError(f"{path}, profile {profile}: no layer sets data.class_path (the data set's class)")
    return config, labels, settings


def compose(path: str | Path, profile: str) -> dict:
    """The complete LightningCLI config of a method in a profile."""
    path = Path(path)
    return _copy(_composed(str(path), profile, _stamp(path))[0])


def provenance(path: str | Path, profile: str) -> dict[str, str]:
    """Dotted setting -> where its value comes from ("paper: ...", "ours: ..."), for the settings labelled."""
    path = Path(path)
    return dict(_composed(str(path), profile, _stamp(path))[1])


def settings(path: str | Path, profile: str) -> list[tuple[str, object, str]]:
    """(dotted setting, value, where it comes from) for every value a layer sets, the classes' defaults aside."""
    path = Path(path)
    _, labels, values = _composed(str(path), profile, _stamp(path))
    return [(key, value, labels.get(key, "")) for key, value in values.items()]


def _stamp(path: Path) -> str:
    """The contents of every file a composition reads: a tuning that rewrites one is seen by the next cell."""
    root = path.parent.parent
    files = [path, root / TUNED_NAME, *sorted(_profiles_dir(path).glob("*.yaml"))]
    return "\0".join(f.read_text() for f in files if f.exists())


def _copy(config: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(config))


def expand_args(args: list[str]) -> list[str]:
    """``--config <method file> --profile <name>`` -> ``--config <the composed YAML>``; other arguments, and
    --config with a complete config file, pass through unchanged."""
    args = list(args)
    profile = None
    for i, arg in enumerate(args):
        if arg == "--profile" and i + 1 < len(args):
            profile = args[i + 1]
            del args[i:i + 2]
            break
        if arg.startswith("--profile="):
            profile = arg.split("=", 1)[1]
            del args[i]
            break
    out, expanded = [], False
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg == "--config" and i + 1 < len(args):
            value, step = args[i + 1], 2
        elif arg.startswith("--config="):
            value, step = arg.split("=", 1)[1], 1
        if value is not None and not value.lstrip().startswith(("{", "[")) and "\n" not in value \
                and value.endswith((".yaml", ".yml")) and not Path(value).exists():
            from hashlab.errors import close_matches
            known = sorted(p.name for p in Path(value).parent.glob("*.yaml")) if Path(value).parent.is_dir() else []
            raise ConfigError(f"--config {value}: no such file{close_matches(Path(value).name, known)}")
        if value is not None and is_method_file(value):
            if profile is None:
                raise ConfigError(f"{value} is a method file: add --profile, one of "
                                  f"{', '.join(method_profiles(value))}")
            out += ["--config", yaml.safe_dump(compose(value, profile), sort_keys=False)]
            expanded = True
            i += step
            continue
        out.append(arg)
        i += 1
    if profile is not None and not expanded:
        raise ConfigError(f"--profile {profile} is given, but no --config names a method file (experiments/methods/)")
    return out


def _scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def setting_line(key: str, entry, indent: str = "") -> str:
    """One setting on one line, as the config files write it: ``key: value`` or ``key: {value: v, from: "..."}``."""
    import json
    if isinstance(entry, dict) and "value" in entry:
        label = f", from: {json.dumps(entry['from'], ensure_ascii=False)}" if entry.get("from") else ""
        return f"{indent}{key}: {{value: {_scalar(entry['value'])}{label}}}"
    return f"{indent}{key}: {_scalar(entry)}"


TUNED_HEADER = ("# Written by `hashlab tune <method>` (reports/tune-<method>/): per method and profile, the values "
                "chosen on\n# validation. They win over the method's file (hashlab/configs.py).\n")


def tuned_text(tuned: dict) -> str:
    """experiments/tuned.yaml's text: per method and profile, one line per setting."""
    lines = [TUNED_HEADER.rstrip("\n")]
    for method in sorted(tuned):
        lines.append(f"{method}:")
        for profile, section in (tuned[method] or {}).items():
            lines.append(f"  {profile}:")
            lines += [setting_line(key, entry, "    ") for key, entry in (section or {}).items()]
    return "\n".join(lines) + "\n"


def write_tuned(path: str | Path, method: str, profile: str, values: dict, label: str) -> None:
    """Set the method's tuned values in one profile of experiments/tuned.yaml (each ``{value, from: label}``); the
    method's other profiles and the other methods' entries stay as they are. Written atomically."""
    from hashlab.io import write_text_atomic
    path = Path(path)
    data = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    section = data.setdefault(method, {}).get(profile) or {}
    for key, value in values.items():
        section[key] = {"value": value, "from": label}
    data[method][profile] = section
    write_text_atomic(path, tuned_text(data))
