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
from pathlib import Path

import yaml

from gantrace.errors import ConfigError
from gantrace.registry import spec_name

TASKS = ("attribution", "membership", "subset_attribution")
ENTRY_KEYS = {"id", "task", "team", "paper", "reported", "deviations", "description", "features"}
ENTRY_KEYS |= {"methods", "fusion"}
REQUIRED = ("id", "task", "team", "paper", "reported", "methods")


def load_entry(path):
    """Read and check one catalogue file; return its mapping."""
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
    if problems:
        raise ConfigError("\n".join(problems))
    if entry["id"] != path.stem:
        raise ConfigError(f"{path}: id '{entry['id']}' must equal the file name '{path.stem}'")
    if entry["task"] not in TASKS:
        raise ConfigError(f"{path}: task must be one of {', '.join(TASKS)}")
    names = set(entry["methods"]) | set(entry.get("fusion") or {})
    if entry["id"] not in names:
        raise ConfigError(
            f"{path}: the id '{entry['id']}' must name one of its methods or fusions "
            "(the row that stands for the published method)"
        )
    return entry


def load(catalogue_dir):
    """Every entry of a catalogue folder, by id, in file-name order."""
    paths = sorted(Path(catalogue_dir).glob("*.yaml"))
    return {p.stem: load_entry(p) for p in paths}


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
    """Add the selected catalogue entries to `config` (in place); return {name: entry id}.

    The returned mapping tells, for every method and fusion that came from the catalogue,
    the id of its entry, so the leaderboard can show which published method a row is.
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
                    origin[name] = cid
    return origin


def markdown_table(entries):
    """The catalogue as a Markdown table (docs/methods.md is this, regenerated)."""
    lines = [
        "| id | task | team | paper | reported | recipe |",
        "|---|---|---|---|---|---|",
    ]
    for cid, e in entries.items():
        recipe = " ".join(str(e.get("description", "")).split())
        paper, reported = e["paper"], e["reported"]
        if isinstance(paper, dict):  # the paper / reported / deviations shape
            paper = f"{paper['source']} ({paper.get('section', '')})"
        if isinstance(reported, list):
            reported = (
                "; ".join(
                    f"{r['run']} {r['metric']} {r['split']} {r['value']} ({r['where']})"
                    for r in reported
                )
                or "no figure in the source"
            )
        lines.append(f"| `{cid}` | {e['task']} | {e['team']} | {paper} | {reported} | {recipe} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m gantrace.catalogue config/methods > table
    import sys

    print(markdown_table(load(sys.argv[1] if len(sys.argv) > 1 else "config/methods")), end="")
