"""Find a dataset's images, give each a stable shard, decode and validate them once.

Images are enumerated when the workflow is parsed (no per-image checkpoints). Decoding
never stops at the first bad file: each shard records every file's status, and the
manifest step reports all rejected files of a dataset in one message.
"""

import glob
import hashlib
import io as _io
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gantrace.data.shards import shard_of
from gantrace.errors import ConfigError, ImageError

MEMBERSHIP_ROLES = ("generated", "real_used", "real_not_used", "real_unknown", "reference_real")
ROLE_LABELS = {
    # membership: real images known not to be members, a clean reference pool; never scored
    "reference_real": -1,
    # membership: samples of a reference generator trained on reference_real; never scored
    "reference_generated": -1,
    "real_used": 1,
    "real_not_used": 0,
    "real_unknown": -1,
    "generated": -1,
    "real_subset": -1,  # subset attribution: its subset is in the `generator` column
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CONVERSIONS = ("grey", "16bit", "resize")
_FORMAT_EXTENSIONS = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp",),
}
TABLE_COLUMNS = ["image_id", "path", "role", "label", "generator", "shard"]


def list_images(spec, key):
    """Files of one role: a folder (non-recursive) or a glob pattern. `key` names the config key."""
    spec = str(spec)
    if glob.has_magic(spec):
        paths = [Path(p) for p in sorted(glob.glob(spec))]
        if not paths:
            raise ConfigError(f"{key}: the pattern {spec!r} matches no file; check the path")
    else:
        folder = Path(spec)
        if not folder.exists():
            raise ConfigError(f"{key}: folder {spec!r} does not exist; fix the path in the config")
        if not folder.is_dir():
            raise ConfigError(f"{key}: {spec!r} is not a folder; give a folder or a glob pattern")
        paths = sorted(p for p in folder.iterdir())
    files = [
        p
        for p in paths
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()
    ]
    if not files:
        raise ConfigError(
            f"{key}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {spec!r}; "
            "point it at the folder that holds the PNGs"
        )
    bad = [f"  {shown_path(p)}: {why}" for p in files if (why := _unusable(p))]
    if bad:
        raise ConfigError(f"{key}: {len(bad)} file(s) cannot be used:\n" + "\n".join(bad))
    return files


def shown_path(path):
    """`path` as printable text, even when its name is not valid UTF-8 (bytes as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _unusable(path):
    """Why a listed file cannot be an image of the workflow (checked when the workflow is
    parsed, before any job), or "" when it can."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "the file name is not valid UTF-8; rename it "
            "(image ids are written to UTF-8 tables and run files)"
        )
    if any(c in path.stem for c in ",\r\n"):
        return "the file name holds a comma or line break, which run files (<id>,<label>) cannot; rename it"
    link = _link_problem(path)
    return f"{link}; fix or remove the link" if link else ""


def _link_problem(path):
    """Why `path` is a symbolic link that leads to no file, or "" (links are followed)."""
    if not path.is_symlink():
        return ""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)"
    except OSError as err:
        return f"unusable symbolic link ({err.strerror or err})"
    return ""


def dataset_roles(name, ds):
    """(role, generator, folder-or-glob, config key) for every image source of a dataset.

    Subset attribution: real images have role `real_subset` and their subset as `generator`
    (a subset's generator is named after the subset it trained on); generated images given
    as {subset: folder} carry their subset the same way, one folder of them carries "".
    """
    sources = []
    if ds["task"] == "subset_attribution":
        subsets = ds.get("real_subsets") or {}
        for s, spec in sorted(subsets.items()):
            sources.append(("real_subset", str(s), spec, f"datasets.{name}.real_subsets.{s}"))
        if len(subsets) < 2:
            raise ConfigError(
                f"datasets.{name}.real_subsets: give at least 2 subsets, {{name: folder}}"
            )
    if ds["task"] == "membership":
        for role in MEMBERSHIP_ROLES:
            if ds.get(role):
                sources.append((role, "", ds[role], f"datasets.{name}.{role}"))
        if not any(r == "generated" for r, *_ in sources):
            raise ConfigError(
                f"datasets.{name}: a membership dataset needs `generated` images "
                "(the generator's output is what membership is inferred from)"
            )
        if not any(r.startswith("real_") for r, *_ in sources):
            raise ConfigError(f"datasets.{name}: a membership dataset needs real images to score")
    else:
        gen = ds.get("generated")
        if isinstance(gen, dict):
            for g, spec in sorted(gen.items()):
                sources.append(("generated", str(g), spec, f"datasets.{name}.generated.{g}"))
        elif gen:
            sources.append(("generated", "", gen, f"datasets.{name}.generated"))
        else:
            raise ConfigError(f"datasets.{name}: an {ds['task']} dataset needs `generated`")
    return sources


def under_root(spec, root=None):
    """`spec` joined to `root` (a config's data_root) when it is relative and root is set."""
    spec = str(spec)
    if root and not Path(spec).expanduser().is_absolute():
        return str(Path(str(root)).expanduser() / spec)
    return spec


def image_table(name, ds, n_shards, root=None):
    """One row per image of a folder-based dataset: id, path, role, label, generator, shard.

    Relative folders and globs are read under `root` (the config's `data_root`) when given.
    """
    rows, problems = [], []
    for role, generator, spec, key in dataset_roles(name, ds):
        try:
            files = list_images(under_root(spec, root), key)
        except ConfigError as err:
            problems.append(str(err))
            continue
        for path in files:
            rows.append((path.stem, str(path), role, ROLE_LABELS[role], generator))
    if problems:
        raise ConfigError("\n".join(problems))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:-1])
    n_generated = int((table.role == "generated").sum())
    if ds["task"] == "attribution" and ds.get("n_generators", 0) > n_generated:
        raise ConfigError(
            f"datasets.{name}.n_generators = {ds['n_generators']} but only {n_generated} "
            "generated image(s) were found; lower it or add images"
        )
    return _finish_table(name, table, n_shards)


def _finish_table(name, table, n_shards):
    dup = table[table.duplicated("image_id", keep=False)]
    if len(dup):
        lines = [f"  {iid}: {', '.join(g.path)}" for iid, g in dup.groupby("image_id", sort=True)]
        raise ConfigError(
            f"datasets.{name}: {dup.image_id.nunique()} image id(s) occur more than once "
            "(an id is the file name without extension and must be unique in a dataset):\n"
            + "\n".join(lines[:20])
        )
    table["shard"] = [shard_of(i, n_shards) for i in table.image_id]
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)


def simulated_table(name, plan, sim_dir, n_shards):
    """The image table of a simulated dataset, from the simulator's plan (known before it runs)."""
    table = pd.DataFrame(
        {
            "image_id": plan.image_id.astype(str),
            "path": [str(Path(sim_dir) / r) for r in plan.relpath],
            "role": plan.role,
            "label": [ROLE_LABELS[r] for r in plan.role],
            "generator": plan.generator.fillna("").astype(str),
        }
    )
    return _finish_table(name, table, n_shards)


def with_reference_samples(name, table, n_samples, sample_dir, shard):
    """`table` and the planned samples of the dataset's reference generator (written by its
    sampling rule as `<sample_dir>/refgen_<i>.png`), all in their own `shard` so that
    retraining the reference generator re-ingests only them."""
    ids = [f"refgen_{i:05d}" for i in range(n_samples)]
    clash = sorted(set(ids) & set(table.image_id))
    if clash:
        raise ConfigError(
            f"datasets.{name}: image id(s) {clash[:5]} clash with the reference generator's "
            "samples (refgen_<i>); rename those files"
        )
    samples = pd.DataFrame(
        {
            "image_id": ids,
            "path": [str(Path(sample_dir) / f"{i}.png") for i in ids],
            "role": "reference_generated",
            "label": ROLE_LABELS["reference_generated"],
            "generator": "",
            "shard": shard,
        }
    )
    return pd.concat([table, samples], ignore_index=True)


class BadImage(Exception):
    """One file's reason for refusal (collected, never raised past the shard)."""


def decode_image(path, image_size, conversions=(), max_pixels=16_777_216):
    """Decode one file to uint8 H×W. Returns (array, info); raises BadImage with the reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        link = _link_problem(path)
        if link:
            raise BadImage(link) from None
        raise BadImage(f"cannot read the file ({err.strerror or err})") from None
    info = {"sha256": hashlib.sha256(data).hexdigest(), "conversion": ""}
    if not data:
        raise BadImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(_io.BytesIO(data))
        except Image.DecompressionBombError:
            raise BadImage("decompression bomb refused by Pillow") from None
        except Exception:
            raise BadImage("not an image (Pillow cannot identify the file format)") from None
    info.update(format=img.format or "", mode=img.mode, width=img.width, height=img.height)
    if img.width * img.height > max_pixels:
        raise BadImage(
            f"{img.width}x{img.height} pixels exceeds ingest.max_pixels={max_pixels} "
            "(refused as a possible decompression bomb)"
        )
    expected = _FORMAT_EXTENSIONS.get(img.format, ())
    if path.suffix.lower() not in expected:
        raise BadImage(
            f"{img.format or 'unknown'} data in a file named {path.suffix!r}; "
            f"rename it to {expected[0] if expected else 'its real type'} or re-export it"
        )
    try:
        img.load()
    except Exception as err:
        raise BadImage(f"truncated or corrupt {img.format} ({err})") from None
    img, conversion = _to_grey8(img, conversions)
    if img.size != (image_size, image_size):
        if "resize" not in conversions:
            raise BadImage(
                f"size {img.width}x{img.height}, expected {image_size}x{image_size} "
                "(add 'resize' to ingest.conversions to resample it)"
            )
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        conversion = "+".join(filter(None, [conversion, "resize"]))
    info["conversion"] = conversion
    return np.asarray(img, dtype=np.uint8), info


def _to_grey8(img, conversions):
    mode = img.mode
    if mode == "L":
        return img, ""
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        if "16bit" not in conversions:
            raise BadImage(
                f"{mode} (16/32-bit) image; add '16bit' to ingest.conversions to rescale it to 8 bit"
            )
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.round(arr).astype(np.uint8), "L"), f"{mode}->L(min-max)"
    if mode in ("RGB", "RGBA", "P", "LA", "PA", "CMYK", "YCbCr", "1"):
        if mode != "1" and "grey" not in conversions:
            raise BadImage(
                f"{mode} image, expected 8-bit greyscale (L); "
                "add 'grey' to ingest.conversions to convert it"
            )
        return img.convert("L"), f"{mode}->L"
    raise BadImage(f"unsupported image mode {mode}")


def ingest_shard(table, image_size, conversions=(), max_pixels=16_777_216):
    """Decode every row of one shard. Returns (ids, uint8 N×H×W of accepted images, status table)."""
    ids, arrays, status = [], [], []
    for row in table.itertuples(index=False):
        rec = {
            "image_id": row.image_id,
            "ok": True,
            "reason": "",
            "sha256": "",
            "format": "",
            "mode": "",
            "width": 0,
            "height": 0,
            "conversion": "",
        }
        try:
            arr, info = decode_image(row.path, image_size, conversions, max_pixels)
            rec.update(info)
            ids.append(row.image_id)
            arrays.append(arr)
        except BadImage as err:
            rec.update(ok=False, reason=str(err))
            if Path(row.path).exists():
                rec["sha256"] = _sha256(row.path)
        status.append(rec)
    meta = table.reset_index(drop=True)
    status = pd.concat([meta, pd.DataFrame(status).drop(columns="image_id")], axis=1)
    images = np.stack(arrays) if arrays else np.zeros((0, image_size, image_size), np.uint8)
    return ids, images, status


def _sha256(path):
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def build_manifest(status_tables, invalid_images="error", dataset=""):
    """Gather shard status tables. Returns (manifest, rejected, notes).

    With invalid_images="error", every rejected file of the dataset is reported in one
    ImageError; shards already decoded stay on disk, so fixing a file reruns only its shard.
    """
    status = pd.concat(status_tables, ignore_index=True).sort_values("image_id", kind="stable")
    rejected = status[~status.ok].reset_index(drop=True)
    accepted = status[status.ok].reset_index(drop=True)
    if len(rejected) and invalid_images == "error":
        raise ImageError(
            list(zip(rejected.path, rejected.reason)),
            hint=(
                f"Fix or remove these files, or set ingest.invalid_images: skip to leave them out "
                f"(dataset {dataset}); images already decoded are kept."
            ),
        )
    notes = []
    dup = accepted[accepted.duplicated("sha256", keep=False)]
    accepted["duplicate_of"] = ""
    if len(dup):
        for _, group in dup.groupby("sha256", sort=True):
            first = group.image_id.iloc[0]
            accepted.loc[group.index[1:], "duplicate_of"] = first
            notes.append(f"same content under several names: {', '.join(group.path)}")
    if len(accepted) == 0:
        raise ImageError(list(zip(rejected.path, rejected.reason)), hint="no usable image left")
    return accepted, rejected, notes


def count_rejected(rejected_path):
    """How many images the `manifest` stage left out of a dataset (`ingest.invalid_images:
    skip`), as its `rejected.parquet` lists them (path, reason per image); 0 when the file
    is not there (yet). For the end-of-run summary: "3 images skipped, listed in ..."."""
    path = Path(rejected_path)
    if not path.is_file():
        return 0
    return len(pd.read_parquet(path, columns=["path"]))
