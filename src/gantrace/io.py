"""Arrays to HDF5, tables to Parquet, always written atomically.

The image and mask shards built on these arrays are `gantrace.data.shards`.

Every writer goes to a temporary name beside the target and renames it into place, so a
killed job never leaves a file that looks complete.
"""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from gantrace import __version__

_STR = h5py.string_dtype("utf-8")


@contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results follow the user's umask
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def _attr(value):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "none"
    return value


def write_array_h5(path, name, ids, array, attrs=None, chunk_rows=64, compression="gzip"):
    """Write `array` (first axis = images) with its `ids` and provenance attributes.

    `compression` is "gzip" (level 4, shuffled, in chunks of `chunk_rows` images) or None
    (one contiguous block); the file's `compression` attribute records it.
    """
    array = np.asarray(array)
    ids = [str(i) for i in ids]
    if len(ids) != len(array):
        raise ValueError(f"{path}: {len(ids)} ids for {len(array)} rows")
    gzip = compression == "gzip" and len(array) > 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as h5:
        chunks = None
        if gzip:
            chunks = (min(chunk_rows, len(array)),) + array.shape[1:]
        h5.create_dataset(
            name,
            data=array,
            chunks=chunks,
            compression="gzip" if gzip else None,
            compression_opts=4 if gzip else None,
            shuffle=gzip,
            track_times=False,
        )
        h5.create_dataset("ids", data=np.array(ids, dtype=object), dtype=_STR, track_times=False)
        h5.attrs["gantrace_version"] = __version__
        for key, value in sorted((attrs or {}).items()):
            h5.attrs[key] = _attr(value)
        h5.attrs["compression"] = "gzip" if gzip else "none"


def ids_of(h5):
    """The ids of an open file written by `write_array_h5`, as str (older h5py: bytes)."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in h5["ids"][()]]


def read_ids_h5(path):
    with h5py.File(path, "r") as h5:
        return ids_of(h5)


def read_array_h5(path, name):
    """Return (ids, array, attrs) of a file written by `write_array_h5`."""
    with h5py.File(path, "r") as h5:
        return ids_of(h5), h5[name][()], dict(h5.attrs)


def write_features(path, ids, features, attrs=None):
    write_array_h5(path, "features", ids, np.asarray(features, dtype=np.float32), attrs, 1024)


def read_features(path):
    """Return (ids, float32 N×D array, attrs)."""
    return read_array_h5(path, "features")


def read_features_by_roles(features_path, manifest_path, *role_sets):
    """[(manifest rows, features)], one pair per set of roles, from one read of each file:
    the images whose manifest `role` is in the set, in the feature file's order; ids the
    manifest does not list are left out."""
    ids, x, _ = read_features(features_path)
    man = read_table(manifest_path).set_index("image_id")
    role_of = man.role.reindex(ids).to_numpy()  # nan where the manifest lists no such id
    out = []
    for roles in role_sets:
        keep = np.flatnonzero([r in roles for r in role_of])
        out.append((man.loc[[ids[i] for i in keep]].reset_index(), x[keep]))
    return out


def read_features_by_role(features_path, manifest_path, roles):
    """(manifest rows, features) of the images whose manifest `role` is one of `roles`
    (`read_features_by_roles` with one set)."""
    return read_features_by_roles(features_path, manifest_path, roles)[0]


def gather_features(paths, out_path, attrs=None):
    """Concatenate per-shard feature files into one, rows sorted by image id."""
    ids, blocks, first_attrs = [], [], {}
    for p in paths:
        i, x, a = read_features(p)
        ids += i
        blocks.append(x)
        first_attrs = first_attrs or a
    x = np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    merged = {k: v for k, v in first_attrs.items() if k not in ("shard", "gantrace_version")}
    merged.update(attrs or {})
    write_features(out_path, [ids[j] for j in order], x[order], merged)


def write_table(df, path):
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path):
    return pd.read_parquet(path)
