"""Seeded used / not-used split of real slices, optionally keeping each group on one side."""

from pathlib import Path

import numpy as np
import pandas as pd

from gantrace.data.groups import assign_groups as group_of
from gantrace.errors import ConfigError

IMAGE_SUFFIXES = (".png",)


def list_slices(source):
    """Sorted PNG files of `source` (a folder); ConfigError if there are none."""
    folder = Path(source)
    if not folder.is_dir():
        raise ConfigError(f"benchmark.source: {source} is not a folder of PNG slices")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"benchmark.source: no .png files in {source}")
    return files


def assign_groups(files, groups=None):
    """Group of each file: its own id, a regex capture (`pattern`), or a CSV `image,group`
    (`gantrace.data.groups`); a file without a group is an error."""
    if not groups:
        return [Path(f).stem for f in files]
    return group_of(files, groups, "benchmark.split.groups", unmatched="error")


class GroupSplit:
    """Split slices into used / not used, then each side into labelled (dev) / hidden (unknown).

    Whole groups move together at every step, so neighbouring slices of one patient never
    fall on both sides. Fractions are reached as closely as whole groups allow. With
    `reference_fraction`, that share of the labelled not-used slices becomes a clean
    reference pool (part `reference`): never scored, the membership datasets'
    `reference_real`. It is drawn last, so a split without it is unchanged.
    """

    def __init__(self, used_fraction=0.5, unknown_fraction=0.3, seed=0, reference_fraction=0.0):
        self.used_fraction = used_fraction
        self.unknown_fraction = unknown_fraction
        self.seed = seed
        self.reference_fraction = reference_fraction

    @staticmethod
    def _take(groups, fraction, rng):
        """Pick whole groups (random order) until `fraction` of the slices is covered."""
        names, counts = np.unique(groups, return_counts=True)
        order = rng.permutation(len(names))
        target, total, chosen = fraction * len(groups), 0, set()
        for i in order:
            if total >= target:
                break
            chosen.add(names[i])
            total += counts[i]
        return np.isin(groups, list(chosen))

    def fit_transform(self, files, groups=None):
        ids = [Path(f).stem for f in files]
        if len(set(ids)) != len(ids):
            raise ConfigError("benchmark.source: two slices share a file name stem")
        groups = np.asarray(groups if groups is not None else ids, dtype=str)
        rng = np.random.default_rng(self.seed)
        used = self._take(groups, self.used_fraction, rng)
        if used.all() or not used.any():
            raise ConfigError(
                "benchmark.split: every group fell on one side; give more groups or change "
                "used_fraction"
            )
        unknown = np.zeros(len(ids), bool)
        for side in (used, ~used):
            idx = np.flatnonzero(side)
            unknown[idx] = self._take(groups[idx], self.unknown_fraction, rng)
        part = np.where(unknown, "unknown", "dev").astype(object)
        if self.reference_fraction > 0:
            idx = np.flatnonzero(~used & ~unknown)
            reference = idx[self._take(groups[idx], self.reference_fraction, rng)]
            if len(reference) == len(idx):
                raise ConfigError(
                    "benchmark.split.reference_fraction: it took every labelled not-used "
                    "group; lower it or give more groups"
                )
            part[reference] = "reference"
        return pd.DataFrame(
            {
                "image_id": ids,
                "path": [str(f) for f in files],
                "group": groups,
                "used": used.astype(int),
                "part": part.astype(str),
            }
        )


def split_slices(source, split, seed=0):
    """The slices of `source` split as a config's `benchmark.split` asks (`GroupSplit`)."""
    files = list_slices(source)
    groups = assign_groups(files, split.get("groups"))
    splitter = GroupSplit(
        split["used_fraction"],
        split["unknown_fraction"],
        seed=seed,
        reference_fraction=split.get("reference_fraction", 0.0),
    )
    return splitter.fit_transform(files, groups)


class SubsetSplit:
    """Split slices into k disjoint subsets of about equal size, whole groups at once.

    Groups are taken in a seeded random order, each to the subset with the fewest slices so
    far, so no patient's slices fall in two subsets. Subsets are named subset1..k.
    """

    def __init__(self, k=3, seed=0):
        self.k, self.seed = k, seed

    def fit_transform(self, files, groups=None):
        ids = [Path(f).stem for f in files]
        groups = np.asarray(groups if groups is not None else ids, dtype=str)
        names, counts = np.unique(groups, return_counts=True)
        if len(names) < self.k:
            raise ConfigError(
                f"benchmark.subsets.k: {self.k} subsets need at least {self.k} groups of slices, "
                f"found {len(names)}; lower k or give finer groups"
            )
        sizes, subset_of = np.zeros(self.k, int), {}
        for i in np.random.default_rng(self.seed).permutation(len(names)):
            s = int(np.argmin(sizes))  # ties: the lowest subset number
            subset_of[names[i]] = s
            sizes[s] += counts[i]
        return pd.DataFrame(
            {
                "image_id": ids,
                "path": [str(f) for f in files],
                "group": groups,
                "subset": [f"subset{subset_of[g] + 1}" for g in groups],
            }
        )


def subset_names(k):
    return [f"subset{i + 1}" for i in range(k)]


def split_subsets(source, split, k, seed=0):
    """The slices of `source` in k disjoint subsets (`SubsetSplit`), grouped as
    `benchmark.split.groups` asks."""
    files = list_slices(source)
    return SubsetSplit(k, seed).fit_transform(files, assign_groups(files, split.get("groups")))
