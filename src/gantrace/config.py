"""Validate a workflow config: JSON schema (unknown keys are errors) plus cross-references."""

import copy
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from gantrace.errors import ConfigError
from gantrace.fusion import RULES
from gantrace.params import validate
from gantrace.registry import KEY


def _with_defaults(cls):
    set_props = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from set_props(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


_Validator = _with_defaults(Draft202012Validator)


def _key(path):
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config, schema_path):
    """Fill defaults in place and check `config`; raise ConfigError naming every bad key."""
    if not isinstance(config, dict):
        raise ConfigError("the config must be a mapping of keys to values")
    renamed = list(_renamed_keys(config))
    if renamed:  # one line each, before the schema buries them under "'name' is required"
        raise ConfigError("invalid config:\n" + "\n".join(f"  {r}" for r in renamed))
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.path)))
    if errors:
        raise ConfigError(
            "invalid config:\n" + "\n".join(f"  {_key(e.path)}: {_message(e)}" for e in errors)
        )
    problems = list(_cross_check(config))
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def _renamed_keys(cfg):
    features = cfg.get("features")
    for name, spec in (features if isinstance(features, dict) else {}).items():
        yield from renamed_keys(f"features.{name}", spec)


def renamed_keys(key, spec):
    """One line per place where a feature spec (or a concat part) still names its
    extractor `extractor:`, the key every other part spec calls `name:`."""
    if not isinstance(spec, dict):
        return
    if "extractor" in spec:
        yield (
            f"{key}.extractor: renamed to 'name'; write `name: {spec['extractor']}` instead "
            f"of `extractor: {spec['extractor']}`"
        )
    parts = spec.get("parts")
    for i, part in enumerate(parts if isinstance(parts, list) else []):
        yield from renamed_keys(f"{key}.parts[{i}]", part)


def _message(error):
    if error.validator == "anyOf" and not error.path:
        return "give `datasets` (image folders to score) or `benchmark` (to build one)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{error.message}{hint}"
    return error.message


def _cross_check(cfg):
    yield from _benchmark_check(cfg.get("benchmark"))
    datasets = cfg.get("datasets", {})
    features = cfg.get("features", {})
    for name, ds in datasets.items():
        has_folders = any(
            k in ds
            for k in ("generated", "real_used", "real_not_used", "real_unknown", "real_subsets")
        )
        if "simulate" in ds and has_folders:
            yield f"datasets.{name}: give either `simulate` or image folders, not both"
        if "simulate" not in ds and not has_folders:
            yield f"datasets.{name}: give image folders (generated, real_used, ...) or `simulate`"
        if "reference_real" in ds and (ds["task"] != "membership" or "simulate" in ds):
            yield (
                f"datasets.{name}.reference_real: only folder-based membership datasets take a "
                "clean reference pool; remove it"
            )
        refgen = ds.get("reference_generator")
        if refgen is not None and "reference_real" not in ds:
            yield (
                f"datasets.{name}.reference_generator: it trains on the clean reference pool; "
                f"set datasets.{name}.reference_real to same-domain real slices known not to "
                "be members, or remove it"
            )
        elif refgen is not None:
            key = f"datasets.{name}.reference_generator.generator"
            yield from generator_problems(key, refgen["generator"])
        if ds["task"] == "attribution":
            for role in ("real_used", "real_not_used", "real_unknown"):
                if role in ds:
                    yield f"datasets.{name}.{role}: only membership datasets have real images"
        elif "n_generators" in ds:
            yield f"datasets.{name}.n_generators: only attribution datasets take it"
        dev = ds.get("dev_dataset")
        if dev is not None and (dev == name or datasets.get(dev, {}).get("task") != ds["task"]):
            others = [d for d, o in datasets.items() if d != name and o["task"] == ds["task"]]
            yield (
                f"datasets.{name}.dev_dataset: {dev!r} is not another {ds['task']} dataset; "
                f"name one of {', '.join(others) or '(none defined)'} or remove the key"
            )
        yield from _subset_dataset_check(name, ds)
    seg = cfg.get("segmentation", {})
    if seg.get("mask_source") == "folder" and not seg.get("mask_dir"):
        yield "segmentation.mask_dir: required when mask_source is 'folder'"
    for ds in seg.get("train_datasets", []):
        if ds not in datasets:
            yield f"segmentation.train_datasets: unknown dataset {ds!r}"
    n_shards = cfg.get("ingest", {}).get("n_shards", 4)
    for s in seg.get("train_shards", []):
        if s >= n_shards:
            yield f"segmentation.train_shards: shard {s} >= ingest.n_shards ({n_shards})"
    for task in ("attribution", "membership", "subset_attribution"):
        section = cfg.get(task, {})
        methods = section.get("methods", {})
        for mname, m in methods.items():
            if mname.startswith("fused_"):
                yield f"{task}.methods.{mname}: names starting with 'fused_' are kept for fusions"
            if m["feature"] not in features:
                yield (
                    f"{task}.methods.{mname}.feature: unknown feature {m['feature']!r} "
                    f"(defined: {', '.join(sorted(features)) or 'none'})"
                )
            for ds in m.get("datasets", []):
                if ds not in datasets or datasets[ds]["task"] != task:
                    yield f"{task}.methods.{mname}.datasets: {ds!r} is not a {task} dataset"
            if task == "attribution":
                yield from _open_set_check(mname, m, datasets)
        for fname, fus in section.get("fusion", {}).items():
            if fname in methods:
                yield f"{task}.fusion.{fname}: name already used by a method"
            for m in fus["methods"]:
                if m not in methods:
                    yield f"{task}.fusion.{fname}.methods: unknown {task} method {m!r}"
            if fus.get("rule", "majority") not in RULES[task]:
                yield (
                    f"{task}.fusion.{fname}.rule: {task} fusion supports only "
                    + " and ".join(f"'{r}'" for r in RULES[task])
                )


def _subset_dataset_check(name, ds):
    """A subset_attribution dataset: real_subsets and generated, labelled by the same names."""
    key = f"datasets.{name}"
    if ds["task"] != "subset_attribution":
        if "real_subsets" in ds:
            yield f"{key}.real_subsets: only subset_attribution datasets take it; remove it"
        return
    for role in ("real_used", "real_not_used", "real_unknown"):
        if role in ds:
            yield (
                f"{key}.{role}: a subset_attribution dataset gives its real images as "
                "real_subsets: {subset: folder}; move them there"
            )
    if "simulate" in ds:
        return
    subsets = ds.get("real_subsets")
    if not subsets:
        yield f"{key}.real_subsets: required: {{subset name: folder of its real images}}"
    if "generated" not in ds:
        yield (f"{key}.generated: required: {{subset: folder}} (labelled) or one folder (test)")
    elif subsets and isinstance(ds["generated"], dict):
        extra = sorted(set(ds["generated"]) - set(subsets))
        if extra:
            yield (
                f"{key}.generated: subset(s) {', '.join(map(repr, extra))} not in real_subsets "
                f"({', '.join(subsets)}); name each generated folder after its real subset"
            )


def _open_set_check(mname, m, datasets):
    key = f"attribution.methods.{mname}"
    est = m.get("estimate_k", {})
    if est.get("k_max", 10) < est.get("k_min", 1):
        yield f"{key}.estimate_k.k_max: {est['k_max']} is below k_min {est['k_min']}"
    source = m.get("known_from")
    if source is None:
        if "open_set" in m:
            yield f"{key}.open_set: only for open-set methods; add known_from (or remove it)"
        return
    ds = datasets.get(source)
    if ds is None or ds["task"] != "attribution":
        yield f"{key}.known_from: {source!r} is not an attribution dataset"
    elif not (isinstance(ds.get("generated"), dict) or "simulate" in ds):
        yield (
            f"{key}.known_from: dataset {source!r} has no per-generator labels; give its "
            "`generated` as {generator: folder} (or use a simulated dataset)"
        )
    if source in m.get("datasets", []):
        yield f"{key}.datasets: lists {source!r}, its own known_from dataset; remove it"


def generator_problems(key, spec):
    """Parameters of a generator entry `{name, ...}` (at config key `key`) that its class
    refuses: unknown names or values out of range."""
    from gantrace.benchmark_builder.generators import GENERATORS  # imports torch

    cls = GENERATORS[spec[KEY]]
    params = {k: v for k, v in spec.items() if k != KEY}
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        yield (
            f"{key}: unknown parameter(s) {unknown} for {spec[KEY]!r} "
            f"(allowed: {', '.join(cls.param_names())})"
        )
        return
    try:
        validate(key, params, cls.constraints())
    except ConfigError as err:
        yield str(err)


def _benchmark_check(bench):
    """Generator parameters and names that the schema cannot see (checked by the classes)."""
    if not bench:
        return
    import re

    # imports torch: only for a config with a benchmark section
    from gantrace.benchmark_builder.generators import GENERATORS

    for name, spec in bench["generators"].items():
        yield from generator_problems(f"benchmark.generators.{name}", spec)
    yield from _same_generators(bench, GENERATORS)
    subsets = bench.get("subsets")
    if subsets and subsets["generator"] not in bench["generators"]:
        yield (
            f"benchmark.subsets.generator: {subsets['generator']!r} is not a generator of "
            f"benchmark.generators ({', '.join(bench['generators'])}); name one of them"
        )
    if not subsets and len(bench["generators"]) < 2:
        yield (
            "benchmark.generators: give at least 2 generators (or add benchmark.subsets "
            "to build only the subset-attribution layout)"
        )
    for g in bench.get("attribution", {}).get("unseen", []):
        if g not in bench["generators"]:
            yield f"benchmark.attribution.unseen: {g!r} is not a generator of benchmark.generators"
    pattern = bench.get("split", {}).get("groups", {}).get("pattern")
    if pattern is not None:
        try:
            if re.compile(pattern).groups < 1:
                yield "benchmark.split.groups.pattern: needs a (...) capture for the group"
        except re.error as err:
            yield f"benchmark.split.groups.pattern: not a regular expression ({err})"


def _same_generators(bench, registry):
    """Two entries that would train the same model: seed twins must differ in `seed`."""
    seen = {}
    for name, spec in bench["generators"].items():
        cls = registry.get(spec[KEY])
        if cls is None:
            continue
        full = {**cls.param_defaults(), "seed": bench.get("seed", 0), **spec}
        full.pop("device", None)  # where it trains, not what
        key = repr(sorted(full.items()))
        if key in seen:
            yield (
                f"benchmark.generators.{name}: the same generator as "
                f"benchmark.generators.{seen[key]} (same parameters and seed); give one "
                "another `seed` to make seed twins, or remove it"
            )
        seen.setdefault(key, name)


def load_config(path, schema_path):
    with open(path) as fh:
        cfg = yaml.safe_load(fh)
    return validate_config(cfg, schema_path)
