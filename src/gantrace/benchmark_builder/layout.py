"""Write a built benchmark in the ImageCLEF layouts of both tasks, with its ground truth."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from gantrace.benchmark_builder.train import load_slices
from gantrace.evaluation.runfiles import write_run_file
from gantrace.imaging import resize_images
from gantrace.registry import KEY


def write_pngs(folder, ids, images):
    """Write uint8 images as `<folder>/<id>.png`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in zip(ids, images, strict=True):
        Image.fromarray(a).save(folder / f"{i}.png")


_write_pngs = write_pngs


def _attribution_split(names, counts, test_fraction, unseen, rng):
    """Per generator: sample indices for dev and for the mixed test folder."""
    parts = {}
    for g, n in zip(names, counts, strict=True):
        order = rng.permutation(n)
        n_test = n if g in unseen else int(round(test_fraction * n))
        parts[g] = (np.sort(order[n_test:]), np.sort(order[:n_test]))
    return parts


class BenchmarkLayout:
    """Membership datasets (one per generator), attribution dev/test, ground truth, config.

    Real slices are written at the output size straight from the source (as in ImageCLEF,
    real images keep their native detail); generated images are upsampled to it only when
    `upsample` is set. Image ids: real slices keep their file stem; generated images get
    neutral ids so a file name never tells the generator.
    """

    def __init__(self, name, resolution=64, upsample=None, test_fraction=0.5, unseen=(), seed=0):
        self.name = name
        self.resolution = resolution
        self.upsample = upsample
        self.test_fraction = test_fraction
        self.unseen = list(unseen)
        self.seed = seed

    @property
    def size(self):
        return self.upsample["size"] if self.upsample else self.resolution

    def write(self, split, samples, out_root, models=None, grouped=False, seeds=None):
        """`split`: the split table; `samples`: generator -> uint8 N x r x r. Returns metadata.
        `grouped` (the split kept patients whole): the real slices' groups go to groups.csv,
        named by every membership dataset, so its folds keep a patient whole too. `models`
        and `seeds` (generator -> architecture, seed) go to ground_truth/generators.csv,
        where seed twins share a model and differ in seed."""
        root = Path(out_root)
        rng = np.random.default_rng(self.seed)
        names = list(samples)
        gen = {g: self._out(samples[g]) for g in names}
        real = load_slices(list(split.path), self.size)
        ids = split.image_id.to_numpy()
        used, unknown = split.used.to_numpy() == 1, (split.part == "unknown").to_numpy()
        reference = (split.part == "reference").to_numpy()  # a clean pool, never scored
        roles = ["generated", "real_used", "real_not_used", "real_unknown"]
        roles += ["reference_real"] if reference.any() else []
        gt = root / "ground_truth"
        gt.mkdir(parents=True, exist_ok=True)
        datasets, groups = {}, {}
        if grouped:
            pd.DataFrame({"image": ids, "group": split.group.astype(str)}).to_csv(
                root / "groups.csv", index=False
            )
            groups = {"groups": {"csv": "groups.csv"}}
        for g in names:
            base = root / "membership" / g
            _write_pngs(base / "generated", [f"{g}_{i:05d}" for i in range(len(gen[g]))], gen[g])
            for role, sel in (
                ("real_used", used & ~unknown),
                ("real_not_used", ~used & ~unknown & ~reference),
                ("real_unknown", unknown),
                ("reference_real", reference),
            ):
                if role in roles:
                    _write_pngs(base / role, ids[sel], real[sel])
            write_run_file(ids[unknown], used[unknown].astype(int), gt / f"membership_{g}.csv")
            pd.DataFrame(
                {
                    "image_id": ids,
                    "label": used.astype(int),
                    "role": np.where(
                        unknown, "real_unknown", np.where(used, "real_used", "real_not_used")
                    ),
                }
            )[~reference].to_csv(gt / f"membership_{g}_truth.csv", index=False)
            datasets[f"{self.name}_membership_{g}"] = {
                "task": "membership",
                **{r: f"membership/{g}/{r}" for r in roles},
                "truth": f"ground_truth/membership_{g}_truth.csv",
                **groups,
            }
        datasets.update(self._attribution(root, gen, rng))
        index = pd.DataFrame(
            {
                "label": np.arange(1, len(names) + 1),
                "generator": names,
                "model": [(models or {}).get(g, "") for g in names],
                "seed": [(seeds or {}).get(g, self.seed) for g in names],
            }
        )
        index.to_csv(gt / "generators.csv", index=False)
        config = {
            "data_root": str(root),
            "ingest": {"image_size": self.size},
            "datasets": datasets,
        }
        meta = {
            "name": self.name,
            "resolution": self.resolution,
            "image_size": self.size,
            "upsampled": bool(self.upsample),
            "upsample": self.upsample,
            "seed": self.seed,
            "n_real": int(len(ids)),
            "n_used": int(used.sum()),
            "n_not_used": int((~used).sum()),
            "n_real_unknown": int(unknown.sum()),
            "n_groups": int(split.group.nunique()),
            "generators": {
                g: {"model": (models or {}).get(g, ""), "n_samples": len(gen[g])} for g in names
            },
            "attribution_unseen_on_dev": self.unseen,
        }
        return config, meta

    def _out(self, images):
        if not self.upsample:
            return images
        return resize_images(images, self.upsample["size"], self.upsample.get("mode", "bicubic"))

    def _attribution(self, root, gen, rng):
        names = list(gen)
        gt = root / "ground_truth"
        if not self.test_fraction and not self.unseen:
            for g in names:
                _write_pngs(
                    root / "attribution" / g, [f"a_{g}_{i:05d}" for i in range(len(gen[g]))], gen[g]
                )
            return {
                f"{self.name}_attribution": {
                    "task": "attribution",
                    "generated": {g: f"attribution/{g}" for g in names},
                    "n_generators": len(names),
                }
            }
        parts = _attribution_split(
            names, [len(gen[g]) for g in names], self.test_fraction, self.unseen, rng
        )
        out = {}
        dev = [g for g in names if len(parts[g][0])]
        for g in dev:
            _write_pngs(
                root / "attribution" / "dev" / g,
                [f"dev_{g}_{i:05d}" for i in parts[g][0]],
                gen[g][parts[g][0]],
            )
        # the test folder mixes every generator under shuffled neutral ids
        pool = [(g, i) for g in names for i in parts[g][1]]
        order = rng.permutation(len(pool))
        test_ids = [f"img_{k:05d}" for k in range(len(pool))]
        mixed = [pool[j] for j in order]
        _write_pngs(
            root / "attribution" / "test" / "generated",
            test_ids,
            [gen[g][i] for g, i in mixed] or np.zeros((0, self.size, self.size), np.uint8),
        )
        label = {g: k for k, g in enumerate(names, start=1)}
        write_run_file(test_ids, [label[g] for g, _ in mixed], gt / "attribution_test.csv")
        pd.DataFrame({"image_id": test_ids, "generator": [g for g, _ in mixed]}).to_csv(
            gt / "attribution_test_truth.csv", index=False
        )
        if len(dev) >= 2:
            out[f"{self.name}_attribution_dev"] = {
                "task": "attribution",
                "generated": {g: f"attribution/dev/{g}" for g in dev},
                "n_generators": len(dev),
            }
        n_test = len({g for g, _ in pool})
        if n_test >= 2:
            out[f"{self.name}_attribution_test"] = {
                "task": "attribution",
                "generated": "attribution/test/generated",
                "truth": "ground_truth/attribution_test_truth.csv",
                "n_generators": n_test,
            }
            if len(dev) >= 2:  # the leaderboard's selected_on_dev row of the test set
                out[f"{self.name}_attribution_test"]["dev_dataset"] = f"{self.name}_attribution_dev"
        return out


def write_benchmark(split_csv, sample_paths, bench, out_root, out_config, out_meta):
    """Library entry of the layout rule: read split + samples, write everything."""
    split = pd.read_csv(split_csv, dtype={"image_id": str, "group": str}, keep_default_na=False)
    samples = {g: np.load(p)["images"] for g, p in sample_paths.items()}
    att = bench.get("attribution", {})
    layout = BenchmarkLayout(
        bench["name"],
        bench["resolution"],
        bench.get("upsample"),
        att.get("test_fraction", 0.5),
        att.get("unseen", []),
        bench.get("seed", 0),
    )
    models = {g: s[KEY] for g, s in bench["generators"].items()}
    seeds = {g: s.get("seed", bench.get("seed", 0)) for g, s in bench["generators"].items()}
    grouped = bool(bench.get("split", {}).get("groups"))
    config, meta = layout.write(split, samples, out_root, models, grouped, seeds)
    Path(out_config).write_text(
        "# Written by `snakemake benchmark`: point the main workflow at this benchmark with\n"
        f"#   snakemake all --configfile {out_config} my_methods.yaml\n"
        "# (my_methods.yaml: features, attribution and membership sections). Results go to\n"
        "# results/<run>/: `run:` if a file sets it, else the last file's name (my_methods).\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    Path(out_meta).write_text(json.dumps(meta, indent=2) + "\n")
    for line in (f"{k}: {v}" for k, v in meta.items()):
        print(line)
