"""The method catalogue: published methods as config files, merged into a run by id.

Each `config/methods/<id>.yaml` holds one method of the literature (the ImageCLEFmedical GANs working notes): who
made it, where it is published, what they reported, and the features, methods and
fusions that reproduce it. A config selects entries with

    catalogue:
      include: all              # or a list of ids
      override:                 # adapt every entry to this run without editing it
        all: {weights: none}    # keys already present in a feature spec
        blip2: {size: tiny}     # keys of one extractor, by name (set even when absent)

and `expand(config, catalogue_dir)` adds their features, methods and fusions to the config
before it is validated, so they run and rank like the user's own methods.
"""

import copy
import numbers
from pathlib import Path

import yaml

from gantrace import papers
from gantrace.errors import ConfigError
from gantrace.registry import spec_name

TASKS = ("attribution", "membership", "subset_attribution")
ENTRY_KEYS = {"id", "task", "team", "paper", "reported", "description", "features"}
ENTRY_KEYS |= {"methods", "fusion", "deviations"}
REQUIRED = ("id", "task", "team", "paper", "reported", "methods")

# The paper's recipe of a run, in gantrace vocabulary (`gantrace.papers.recipe_of` derives
# ours for the same keys): what each key holds.
RECIPE_KEYS = {
    "preprocess": "a preprocessor name (or a list of them), or none",
    "input_size": "pixels fed to the extractor (an int, a list for concatenated parts)",
    "extractor": "features registry name(s), a list for concatenated parts",
    "arch": "the extractor's architecture: torchvision/finetuned arch, timm model, HF size",
    "weights": "imagenet | none | finetuned (trained on dev labels)",
    "layer": "penultimate | cls | mean | cls+mean | logit | both | probabilities",
    "region": "full | lung | outer",
    "reducer": "none or {name: pca|tsne|autoencoder, <param>: <value>}",
    "clusterer": "attribution: {name: <clusterer>, <param>: <value>}",
    "scorer": "membership: {name: <scorer>, <param>: <value>}",
    "assigner": "subset_attribution: {name: <assigner>, <param>: <value>}",
    "decision": "membership threshold rule: oof_f1 | fraction | natural | mixture",
    "labels": "none | dev: whether the run learns anything from dev labels",
    "epochs": "training epochs of a trained part",
    "fusion": "a fusion run: {name: <rule>, <param>: <value>}",
}
RUN_KEYS = ("submission", "recipe", "notes")
PAPER_KEYS = ("source", "section", "runs")
METRICS = ("f1", "kappa", "auc", "accuracy", "precision", "recall", "specificity", "ari", "nmi")
SPLITS = ("test", "dev")
REPORTED_KEYS = {"run": True, "metric": True, "split": True, "value": True, "where": True}
REPORTED_KEYS |= {"submission": False, "note": False}
DEVIATION_KEYS = {"run": True, "key": True, "paper": True, "ours": True, "reason": True}
DEVIATION_KEYS |= {"substitute": False}


def _text(value):
    return isinstance(value, str) and value.strip() != ""


def _keys(where, item, keys):
    """Problems of a mapping against {key: required}: not a mapping, missing, unknown."""
    if not isinstance(item, dict):
        return [f"{where}: expected a mapping with keys {', '.join(keys)}"]
    problems = [f"{where}: missing key '{k}'" for k, req in keys.items() if req and k not in item]
    return problems + [
        f"{where}.{k}: unknown key (allowed: {', '.join(keys)})" for k in item if k not in keys
    ]


def paper_problems(entry, where):
    """Every problem of an entry's `paper`, `reported` and `deviations` blocks (issue 15).

    Run names must be methods or fusions of the entry; recipe keys come from RECIPE_KEYS.
    """
    names = set(entry.get("methods") or {}) | set(entry.get("fusion") or {})
    paper = entry.get("paper")
    problems = _keys(f"{where}: paper", paper, dict.fromkeys(PAPER_KEYS, True))
    runs = paper.get("runs") if isinstance(paper, dict) else None
    if isinstance(paper, dict):
        for key in ("source", "section"):
            if key in paper and not _text(paper[key]):
                problems.append(f"{where}: paper.{key}: expected a non-empty string")
        if "runs" in paper and (not isinstance(runs, dict) or not runs):
            problems.append(f"{where}: paper.runs: expected a mapping {{run name: {{...}}}}")
            runs = None
    for run, block in (runs or {}).items():
        at = f"{where}: paper.runs.{run}"
        if run not in names:
            problems.append(
                f"{at}: not a method or fusion of this entry ({', '.join(sorted(names))})"
            )
        problems += _keys(at, block, {"submission": True, "recipe": True, "notes": False})
        recipe = block.get("recipe") if isinstance(block, dict) else None
        if isinstance(block, dict) and not isinstance(recipe, dict):
            problems.append(f"{at}.recipe: expected a mapping of recipe keys")
        for key in recipe if isinstance(recipe, dict) else ():
            if key not in RECIPE_KEYS:
                problems.append(
                    f"{at}.recipe.{key}: unknown recipe key (allowed: {', '.join(RECIPE_KEYS)})"
                )
    reported = entry.get("reported")
    if not isinstance(reported, list):
        problems.append(
            f"{where}: reported: expected a list of {{run, metric, split, value, where}}"
        )
        reported = []
    for i, item in enumerate(reported):
        at = f"{where}: reported[{i}]"
        problems += _keys(at, item, REPORTED_KEYS)
        if not isinstance(item, dict):
            continue
        if "run" in item and item["run"] not in names:
            problems.append(f"{at}.run: {item['run']!r} is not a method or fusion of this entry")
        if "metric" in item and item["metric"] not in METRICS:
            problems.append(
                f"{at}.metric: expected one of {', '.join(METRICS)}, got {item['metric']!r}"
            )
        if "split" in item and item["split"] not in SPLITS:
            problems.append(
                f"{at}.split: expected one of {', '.join(SPLITS)}, got {item['split']!r}"
            )
        value = item.get("value")
        if "value" in item and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            problems.append(f"{at}.value: expected a number as printed in the paper, got {value!r}")
    deviations = entry.get("deviations", [])
    if not isinstance(deviations, list):
        problems.append(
            f"{where}: deviations: expected a list of {{run, key, paper, ours, reason}}"
        )
        deviations = []
    for i, item in enumerate(deviations):
        at = f"{where}: deviations[{i}]"
        problems += _keys(at, item, DEVIATION_KEYS)
        if not isinstance(item, dict):
            continue
        if "run" in item and item["run"] != "all" and item["run"] not in names:
            problems.append(
                f"{at}.run: {item['run']!r} is not 'all' nor a method or fusion of this entry"
            )
        if "key" in item and item["key"] not in RECIPE_KEYS:
            problems.append(
                f"{at}.key: unknown recipe key {item['key']!r} (allowed: {', '.join(RECIPE_KEYS)})"
            )
        if "reason" in item and not _text(item["reason"]):
            problems.append(f"{at}.reason: say why our recipe departs here")
        if not isinstance(item.get("substitute", False), bool):
            problems.append(f"{at}.substitute: expected true or false")
    return problems


def load_entry(path):
    """Read and check one catalogue file; return its mapping. Every problem is reported at
    once, each naming the file and the key."""
    path = Path(path)
    try:
        entry = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    problems = [f"{path}: missing key '{k}'" for k in REQUIRED if k not in entry]
    problems += [
        f"{path}: unknown key '{k}' (allowed: {', '.join(sorted(ENTRY_KEYS))})"
        for k in sorted(set(entry) - ENTRY_KEYS)
    ]
    if "id" in entry and entry["id"] != path.stem:
        problems.append(f"{path}: id '{entry['id']}' must equal the file name '{path.stem}'")
    if "task" in entry and entry["task"] not in TASKS:
        problems.append(f"{path}: task must be one of {', '.join(TASKS)}")
    names = set(entry.get("methods") or {}) | set(entry.get("fusion") or {})
    if "id" in entry and "methods" in entry and entry["id"] not in names:
        problems.append(
            f"{path}: the id '{entry['id']}' must name one of its methods or fusions "
            "(the row that stands for the published method)"
        )
    if "paper" in entry and "reported" in entry:
        problems += paper_problems(entry, str(path))
    if problems:
        raise ConfigError("\n".join(problems))
    return entry


def load(catalogue_dir):
    """Every entry of a catalogue folder, by id, in file-name order."""
    paths = sorted(Path(catalogue_dir).glob("*.yaml"))
    return {p.stem: load_entry(p) for p in paths}


def _spec_downloads_weights(spec):
    if spec.get("weights", "none") != "none":
        return True
    return any(_spec_downloads_weights(part) for part in spec.get("parts") or [])


def downloads_weights(entry):
    """Whether any feature of the entry, as its paper ran it, starts from downloaded
    weights (ImageNet, artwork, ...). The others run offline as published, so they are the
    entries that can be scored on a benchmark of real slices without a model hub."""
    return any(_spec_downloads_weights(s) for s in (entry.get("features") or {}).values())


def _override(spec, override):
    """A feature spec with the run's overrides applied (recursively into `parts`)."""
    spec = copy.deepcopy(spec)
    for key, value in (override.get("all") or {}).items():
        if key in spec:
            spec[key] = value
    spec.update(override.get(spec_name(spec), {}) or {})
    for key in ("parts",):
        if isinstance(spec.get(key), list):
            spec[key] = [_override(p, override) for p in spec[key]]
    return spec


def _merge(target, name, value, where, owner):
    if name in target and target[name] != value:
        raise ConfigError(
            f"{where}.{name}: defined differently by {owner} and elsewhere in the config; "
            "rename one of them"
        )
    target[name] = value


def expand(config, catalogue_dir):
    """Add the selected catalogue entries to `config` (in place); return
    {name: {"id": entry id, "substitute": bool}}.

    The returned mapping tells, for every method and fusion that came from the catalogue,
    the id of its entry, so the leaderboard can show which published method a row is, and
    whether a stand-in component runs in it (a deviation with `substitute: true`).
    """
    section = config.get("catalogue")
    if not section:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("catalogue: expected a mapping with 'include' (and 'override')")
    unknown = sorted(set(section) - {"include", "override"})
    if unknown:
        raise ConfigError(f"catalogue.{unknown[0]}: unknown key (allowed: include, override)")
    entries = load(catalogue_dir)
    include = section.get("include", "all")
    if include == "all":
        include = list(entries)
    if not isinstance(include, list):
        raise ConfigError("catalogue.include: give 'all' or a list of method ids")
    missing = [i for i in include if i not in entries]
    if missing:
        raise ConfigError(
            f"catalogue.include: unknown id(s) {', '.join(map(repr, missing))}; "
            f"known ids are the files in {catalogue_dir}: {', '.join(entries)}"
        )
    override = section.get("override") or {}
    if not isinstance(override, dict):
        raise ConfigError(
            "catalogue.override: expected a mapping {all|<extractor name>: {key: value}}"
        )
    origin = {}
    features = config.setdefault("features", {})
    for cid in include:
        entry, owner = entries[cid], f"catalogue entry '{cid}'"
        for name, spec in (entry.get("features") or {}).items():
            _merge(features, name, _override(spec, override), "features", owner)
        task = config.setdefault(entry["task"], {})
        for kind in ("methods", "fusion"):
            part = task.setdefault(kind, {})
            for name, spec in (entry.get(kind) or {}).items():
                _merge(part, name, copy.deepcopy(spec), f"{entry['task']}.{kind}", owner)
                # A name shared by entries belongs to the entry it is the headline of.
                if name == cid or name not in origin:
                    origin[name] = {"id": cid, "substitute": name in papers.substitutes(entry)}
    return origin


def main(argv=None):
    """`python -m gantrace.catalogue config/methods [--scores NAME=CSV[@DATE]] [--write FILE]`:
    the generated part of docs/methods.md (see its first lines), printed or written below
    the marker line of FILE."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gantrace.catalogue")
    parser.add_argument("catalogue_dir", nargs="?", default="config/methods")
    parser.add_argument("--scores", action="append", default=[], metavar="NAME=CSV[@DATE]")
    parser.add_argument("--write", metavar="FILE", help="replace FILE below its marker line")
    args = parser.parse_args(argv)
    try:
        text = papers.docs_markdown(load(args.catalogue_dir), args.scores)
    except (ConfigError, OSError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    if not args.write:
        print(text, end="")
        return
    path = Path(args.write)
    head, marker, _ = path.read_text().partition(papers.GENERATED)
    if not marker:
        parser.exit(2, f"error: {path} has no marker line {papers.GENERATED!r}\n")
    path.write_text(head + marker + "\n\n" + text)


if __name__ == "__main__":
    main()
