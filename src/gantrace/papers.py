"""A catalogue entry against its paper: our recipe of a run, in the paper block's vocabulary.

`recipe_of(entry, run)` reads the run's config (feature spec, method or fusion spec) and
the parts built from it (`MembershipMethod.from_spec`, `AttributionMethod.from_spec`, the
features registry) and returns one value per key of `catalogue.RECIPE_KEYS`;
`check_run(entry, run)` compares it with the paper's recipe and the entry's deviations,
so an entry that drifts from its paper is a list of problems (tests and docs share this).

    recipe_of(entries["goa_resnet50_class_centroids"], "goa_resnet50_class_centroids")
    # {'extractor': ['torchvision'], 'arch': ['resnet50'], 'weights': 'imagenet', ...}
"""

import math
import numbers

from gantrace.preprocess import build_preprocessor
from gantrace.registry import KEY, spec_name

# Seeds and sizes a method injects: not part of a paper's recipe.
_NOT_RECIPE = ("random_state", "seed", "batch_size", "block_size", "device", "config_key")
# What the extractor's features are, by registry name (see each extractor's docstring).
_LAYERS = {
    "torchvision": "penultimate",
    "timm": "penultimate",
    "efficientnet_lite0": "penultimate",
    "dinov2": "cls+mean",
}


def _part(part, name=None):
    """{name, **params} of a built part, without injected seeds and sizes."""
    params = {k: v for k, v in part.get_params().items() if k not in _NOT_RECIPE}
    return {KEY: name or part.name, **params}


def substitutes(entry):
    """Names of the entry's runs that a deviation with `substitute: true` covers."""
    names = set(entry.get("methods") or {}) | set(entry.get("fusion") or {})
    covered = set()
    for d in entry.get("deviations") or []:
        if d.get("substitute"):
            covered |= names if d["run"] == "all" else {d["run"]}
    for name, spec in (entry.get("fusion") or {}).items():  # a fusion runs its members
        if covered & set(spec.get("methods") or []):
            covered.add(name)
    return covered


def _one(values):
    """A list of one value is that value (the paper gives one extractor as a name)."""
    return values[0] if len(values) == 1 else values


def _feature_recipe(spec, key):
    # imports torch-backed extractor modules: only when a recipe is asked for
    from gantrace.features import check_spec

    extractor = check_spec(spec, key=key)
    parts = [extractor]
    if spec_name(spec) == "concat":
        parts = [check_spec(p, key=f"{key}.parts") for p in spec["parts"]]
    params = [p.get_params() for p in parts]
    steps = build_preprocessor(spec.get("preprocess"), key=f"{key}.preprocess").spec()
    recipe = {
        "extractor": [p.name for p in parts],
        "preprocess": "none" if not steps else _one([s if len(s) > 1 else s[KEY] for s in steps]),
        "input_size": _one([q.get("input_size") or q.get("size") for q in params]),
        "weights": _weights(extractor, params),
    }
    archs = [_arch(q) for q in params]
    if len(archs) == 1 and isinstance(archs[0], list):  # a finetuned ensemble: its nets
        archs = archs[0]
    if any(a is not None for a in archs):
        recipe["arch"] = archs
    layers = [_layer(p) for p in parts]
    if all(layer is not None for layer in layers):
        recipe["layer"] = _one(layers)
    if extractor.learned:
        recipe["epochs"] = extractor.params["epochs"]
    return recipe


def _arch(params):
    """torchvision / finetuned `arch` (a finetuned `ensemble`: the list of its archs), timm
    `model`, a HF model's `size` (a pixel size is an int: pixels, not an architecture)."""
    size = params.get("size")
    named = params.get("ensemble") or params.get("arch") or params.get("model")
    return named or (size if isinstance(size, str) else None)


def _weights(extractor, params):
    if extractor.learned:
        return "finetuned"
    found = {q["weights"] for q in params if "weights" in q}
    if not found:
        return "none"  # pixels, LBP, spectra: nothing pretrained
    return _one(sorted(found))


def _layer(part):
    if part.learned:
        return part.params["output"]
    if "pool" in part.params:
        return part.params["pool"]
    return _LAYERS.get(part.name)


def _method_recipe(entry, spec):
    # imports scikit-learn-backed methods: only when a recipe is asked for
    from gantrace.attribution.method import AttributionMethod
    from gantrace.membership.method import MembershipMethod  # scikit-learn, as above
    from gantrace.subset.method import SubsetMethod  # scikit-learn, as above

    feature = entry["features"][spec["feature"]]
    recipe = _feature_recipe(feature, f"features.{spec['feature']}")
    recipe["region"] = spec.get("region", "full")
    learned = recipe["weights"] == "finetuned" and not feature.get("train_from")
    if entry["task"] == "attribution":
        method = AttributionMethod.from_spec(spec, n_clusters=None, random_state=0)
        reducer, clusterer = method._build(2)
        recipe["clusterer"] = _part(clusterer, spec_name(spec["clusterer"]))
        # The dataset's n_generators, unless the method estimates it (estimate_k).
        recipe["clusterer"]["n_clusters"] = "estimated" if "estimate_k" in spec else "n_generators"
    elif entry["task"] == "subset_attribution":
        method = SubsetMethod.from_spec(spec, n_folds=5, random_state=0)
        reducer = method.reducer_
        recipe["assigner"] = _part(method.assigner_, spec_name(spec["assigner"]))
        if isinstance(recipe["assigner"].get("clusterer"), dict):  # cluster_match's clusterer
            recipe["clusterer"] = recipe["assigner"]["clusterer"]
        learned = learned or method.needs_labels
    else:
        method = MembershipMethod.from_spec(spec, n_folds=5, random_state=0)
        reducer, scorer = method._build(method.combos_[0])
        recipe["scorer"] = _part(scorer, spec_name(spec["scorer"]))
        given = spec["scorer"] if isinstance(spec["scorer"], dict) else {}
        tuned = {k: v for k, v in given.items() if isinstance(v, list)}
        recipe["scorer"].update(tuned)  # tuned parameters: the list of values tried
        recipe["decision"] = method.rule_
        # A threshold fitted out of fold, a supervised or a tuned scorer learn from labels.
        learned = learned or method.supervised_ or bool(tuned) or method.rule_ == "oof_f1"
        if "epochs" in recipe["scorer"] and "epochs" not in recipe:
            recipe["epochs"] = recipe["scorer"]["epochs"]
    recipe["reducer"] = "none" if reducer.name == "none" else _part(reducer)
    if "epochs" in recipe["reducer"] and "epochs" not in recipe:
        recipe["epochs"] = recipe["reducer"]["epochs"]
    recipe["labels"] = "dev" if learned else "none"
    return recipe


def recipe_of(entry, run):
    """Our recipe of `run` (a method or fusion of `entry`) under the keys of
    `catalogue.RECIPE_KEYS`. A fusion's key holds the value its methods share, or the list
    of their values in order; its `labels` is dev if any method (or the rule) learns."""
    if run in entry.get("methods", {}):
        return _method_recipe(entry, entry["methods"][run])
    spec = entry["fusion"][run]
    members = [recipe_of(entry, m) for m in spec["methods"]]
    recipe = {}
    for key in dict.fromkeys(k for m in members for k in m):
        values = [m.get(key) for m in members]
        recipe[key] = values[0] if all(v == values[0] for v in values) else values
    rule = spec.get("rule", "majority")
    recipe["fusion"] = dict(rule) if isinstance(rule, dict) else {KEY: rule}
    learned = any(m["labels"] == "dev" for m in members) or spec_name(rule) == "stacked"
    recipe["labels"] = "dev" if learned else "none"
    return recipe


def matches(paper, ours):
    """Whether our value implements the paper's: mappings compare on the paper's keys only,
    a name matches a mapping of that name, one value matches a list of one, numbers match
    when close."""
    if isinstance(paper, dict):
        if isinstance(ours, str):
            ours = {KEY: ours}
        return isinstance(ours, dict) and all(matches(v, ours.get(k)) for k, v in paper.items())
    if isinstance(paper, str) and isinstance(ours, dict):
        return ours.get(KEY) == paper
    if isinstance(ours, (list, tuple)) and len(ours) == 1 and not isinstance(paper, list):
        return matches(paper, ours[0])
    if isinstance(paper, list):
        ours = ours if isinstance(ours, (list, tuple)) else [ours]
        return len(paper) == len(ours) and all(matches(p, o) for p, o in zip(paper, ours))
    numeric = (isinstance(x, numbers.Real) and not isinstance(x, bool) for x in (paper, ours))
    if all(numeric):
        return math.isclose(paper, ours, rel_tol=1e-9)
    return paper == ours


def deviation(entry, run, key):
    """The entry's deviation covering (run, key), or None."""
    for d in entry.get("deviations") or []:
        if d["key"] == key and d["run"] in (run, "all"):
            return d
    return None


def check_run(entry, run):
    """Problems of one paper run: each recipe key (and each deviation's key) whose value in
    our built method differs from the paper's, or from the deviation's `ours` where the
    entry declares one. Empty when the entry implements its paper."""
    ours = recipe_of(entry, run)
    recipe = entry["paper"]["runs"][run]["recipe"]
    keys = list(recipe) + [
        d["key"] for d in entry.get("deviations") or [] if d["run"] in (run, "all")
    ]
    problems = []
    for key in dict.fromkeys(keys):
        dev = deviation(entry, run, key)
        want, what = (dev["ours"], "its deviation's `ours`") if dev else (recipe[key], "the paper")
        if not matches(want, ours.get(key)):
            problems.append(
                f"{entry['id']}: run {run}: {key}: ours is {ours.get(key)!r}, {what} says {want!r}"
            )
    return problems


# -- docs/methods.md ------------------------------------------------------------------------
GENERATED = "<!-- generated below: do not edit; see the command above -->"


def _units(key, value):
    """{parameter: unit} of the part a recipe mapping names (`Part.units`), e.g. a scorer's
    noise_std in grey levels."""
    # the registries import scikit-learn and torch-backed parts: docs only
    from gantrace.attribution.method import CLUSTERERS
    from gantrace.membership.scorers import SCORERS  # scikit-learn, as above
    from gantrace.reduce import REDUCERS  # scikit-learn, as above

    registry = {"scorer": SCORERS, "clusterer": CLUSTERERS, "reducer": REDUCERS}.get(key)
    cls = registry.get(value.get(KEY)) if registry and isinstance(value, dict) else None
    return cls.units() if cls is not None and hasattr(cls, "units") else {}


def _cell(value, units=None):
    """A recipe value in one Markdown table cell, parameters with their units."""
    units = units or {}
    if value is None:
        return "—"
    if isinstance(value, dict):
        rest = ", ".join(
            f"{k}: {_cell(v)}" + (f" {units[k]}" if k in units else "")
            for k, v in value.items()
            if k != KEY
        )
        return f"{value.get(KEY, '')} ({rest})" if rest else str(value.get(KEY, ""))
    if isinstance(value, (list, tuple)):
        return " + ".join(_cell(v, units) for v in value)
    return " ".join(str(value).split()).replace("|", "/")


def _figures(items):
    return "; ".join(
        f"{r['metric']} {r['value']:g} ({r['split']}, {' '.join(r['where'].split())})"
        for r in items
    )


def _run_table(entry, run):
    recipe = entry["paper"]["runs"][run]["recipe"]
    ours = recipe_of(entry, run)
    lines = ["| key | paper | ours | deviation |", "|---|---|---|---|"]
    keys = list(recipe) + [k for k in ours if k not in recipe]
    for key in keys:
        dev = deviation(entry, run, key)
        said = " ".join(dev["reason"].split()) if dev else ""
        if dev and dev.get("substitute"):
            said = f"substitute: {said}"
        paper = _cell(recipe[key], _units(key, recipe[key])) if key in recipe else "(not stated)"
        mine = _cell(ours.get(key), _units(key, ours.get(key)))
        lines.append(f"| {key} | {paper} | {mine} | {said} |")
    return lines


def entry_markdown(entry):
    """One entry: its paper, then per paper run its recipe against ours, the deviations and
    the figures the paper reports."""
    paper, cid = entry["paper"], entry["id"]
    out = [
        f"### `{cid}`",
        "",
        f"{entry['team']}, {entry['task']}: {' '.join(str(entry.get('description', '')).split())}",
        "",
        f"Paper: {' '.join(paper['source'].split())}; {' '.join(paper['section'].split())}.",
    ]
    for run, block in paper["runs"].items():
        sub = f"submission {block['submission']}" if block.get("submission") else "no submission id"
        out += ["", f"Run `{run}` ({sub}):", ""] + _run_table(entry, run)
        if block.get("notes"):
            out += ["", f"Paper: {' '.join(block['notes'].split())}"]
        figures = [r for r in entry["reported"] if r["run"] == run]
        out += ["", f"Reported: {_figures(figures) or 'no figure quoted in the source'}."]
    return "\n".join(out)


def catalogue_markdown(entries):
    """The catalogue part of docs/methods.md: a summary table and one section per entry
    (reproducible from config/methods alone; tests check it is current)."""
    lines = [
        "| id | task | team | reported (paper) | deviations |",
        "|---|---|---|---|---|",
    ]
    for cid, e in entries.items():
        reported = "; ".join(
            f"`{r['run']}` {r['metric']} {r['value']:g} ({r['split']})" for r in e["reported"]
        )
        devs = ", ".join(sorted({f"{d['run']}: {d['key']}" for d in e.get("deviations") or []}))
        if substitutes(e):
            devs += " (substitute)"
        lines.append(
            f"| `{cid}` | {e['task']} | {e['team']} | {reported or '—'} | {devs or 'none'} |"
        )
    sections = [entry_markdown(e) for e in entries.values()]
    return "\n".join(lines) + "\n\n" + "\n\n".join(sections) + "\n"


def read_scores(spec):
    """`NAME=PATH[@YYYY-MM-DD]` -> (name, date, leaderboard frame); the date defaults to the
    CSV's modification date (UTC): when the figures were produced, never typed in."""
    import datetime  # only the docs command needs these
    from pathlib import Path

    import pandas as pd  # pandas: only the docs command reads leaderboards

    name, _, rest = spec.partition("=")
    path, _, date = rest.partition("@")
    if not name or not path:
        raise ValueError(f"--scores: expected NAME=PATH[@YYYY-MM-DD], got {spec!r}")
    if not date:
        mtime = Path(path).stat().st_mtime
        date = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).date().isoformat()
    return name, date, pd.read_csv(path)


def _score_cell(board, run):
    """The run's scores on every dataset it ran on, with their bootstrap intervals where
    the leaderboard has them; dev rows are left out where a test split exists (membership
    dev scores are out-of-fold, the test ones are the comparable figure)."""
    rows = board[board.method.isin([run, f"fused_{run}"])]
    if "split" in rows and (rows.split != "dev").any():
        rows = rows[rows.split != "dev"]
    cells = []
    for r in rows.itertuples():
        if r.score != r.score:  # NaN: not scored
            continue
        lo, hi = getattr(r, "score_lo", float("nan")), getattr(r, "score_hi", float("nan"))
        ci = f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else ""
        per_group = ", per group" if getattr(r, "level", "image") == "group" else ""
        cells.append(f"{r.metric} {r.score:.3f}{ci} ({r.dataset} {r.split}{per_group})")
    return "<br>".join(cells) or "not run"


def scores_markdown(entries, scores):
    """Our scores per paper run from leaderboard CSVs (`read_scores`), beside the paper's
    figures and the keys where our recipe departs from it."""
    head = " | ".join(f"ours: {name} ({date})" for name, date, _ in scores)
    lines = [f"| run | entry | reported (paper) | {head} | deviations |"]
    lines.append("|---|---|---|" + "---|" * len(scores) + "---|")
    for cid, e in entries.items():
        for run in e["paper"]["runs"]:
            reported = "; ".join(
                f"{r['metric']} {r['value']:g} ({r['split']})"
                for r in e["reported"]
                if r["run"] == run
            )
            ours = " | ".join(_score_cell(board, run) for _, _, board in scores)
            devs = sorted({d["key"] for d in e.get("deviations") or [] if d["run"] in (run, "all")})
            devs = ", ".join(devs) or "none"
            lines.append(f"| `{run}` | `{cid}` | {reported or '—'} | {ours} | {devs} |")
    return "\n".join(lines) + "\n"


def docs_markdown(entries, scores=()):
    """The generated part of docs/methods.md: the catalogue, then (given leaderboard CSVs,
    `read_scores` specs) our scores beside the paper's."""
    text = "## Entries\n\n" + catalogue_markdown(entries)
    if scores:
        read = [read_scores(s) for s in scores]
        text += "\n## Our scores\n\n" + scores_markdown(entries, read)
    return text
