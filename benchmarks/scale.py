"""How the stages scale with the number of slices: wall time and peak memory per stage.

    PYTHONPATH=src python benchmarks/scale.py --sizes 5000,50000 [--workdir /big/tmp]

Per size N:
  simulate      N 256x256 PNGs. Rendering a full thorax slice costs tens of ms, so a pool
                of `--pool` slices is rendered (gantrace.data.simulate.thorax_slice) and N images
                are made from it by a random flip, a random shift of up to 8 px and fresh
                Gaussian noise (sigma 3) - cheap, and every PNG differs (no duplicates).
  ingest        decode PNG -> HDF5 image shards of `--shard-size` (gantrace.data.ingest.ingest_shard +
                gantrace.data.shards.write_images), one after another (the workflow runs shards in
                parallel).
  pixels        extract_shard with pixels 32x32 per shard, then io.gather_features (N x 1024).
  kmeans        attribution k-means, 4 clusters, on the N x 1024 features.
  agglomerative attribution ward clustering; refuses above max_samples (20,000 by default).
  knn           membership k-NN (k=1) scorer: generated = 80 % of N, real = 20 %.
  cluster_dist  membership cluster_distance scorer (k-means, 10 centres) on the same split.
Each stage runs in its own subprocess; wall time excludes its imports; peak memory is that
process's ru_maxrss (imports included; `base` is the ru_maxrss after imports, before the stage).
Finally k-NN scoring of 10,000 generated x 4,000 real images (pixels 32x32 features).
`--extrapolate-to` prints a linear extrapolation of the largest measured N (clearly labelled).
"""

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAGES = ("simulate", "ingest", "pixels", "kmeans", "agglomerative", "knn", "cluster_dist")


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ---------------------------------------------------------------- stages (in a subprocess)


def stage_simulate(work, n, pool=256, seed=0):
    from PIL import Image

    from gantrace.data.simulate import thorax_slice

    rng = np.random.default_rng(seed)
    base = np.stack([thorax_slice(rng)[0] for _ in range(min(pool, n))])
    out = work / "png"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = base[rng.integers(len(base))].astype(np.float32)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.roll(img, tuple(rng.integers(-8, 9, size=2)), axis=(0, 1))
        img = img + rng.normal(0.0, 3.0, img.shape).astype(np.float32)
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(out / f"s{i:06d}.png", format="PNG", compress_level=1)
    return {"n_pool": int(min(pool, n))}


def stage_ingest(work, n, shard_size):
    import pandas as pd

    from gantrace.data import shards
    from gantrace.data.ingest import ingest_shard

    paths = sorted((work / "png").glob("*.png"))
    assert len(paths) == n, (len(paths), n)
    (work / "images").mkdir(exist_ok=True)
    for s in range(math.ceil(n / shard_size)):
        chunk = paths[s * shard_size : (s + 1) * shard_size]
        table = pd.DataFrame(
            {
                "image_id": [p.stem for p in chunk],
                "path": [str(p) for p in chunk],
                "role": "generated",
                "label": -1,
                "generator": "",
                "shard": s,
            }
        )
        ids, images, status = ingest_shard(table, 256)
        assert status.ok.all()
        shards.write_images(work / "images" / f"{s}.h5", ids, images, {"shard": s})
    return {"n_shards": math.ceil(n / shard_size)}


def stage_pixels(work, n):
    from gantrace import io
    from gantrace.features import extract_shard

    parts = []
    for h5 in sorted((work / "images").glob("*.h5"), key=lambda p: int(p.stem)):
        out = work / "features" / f"{h5.stem}.h5"
        out.parent.mkdir(exist_ok=True)
        extract_shard(h5, None, "full", {"name": "pixels", "size": 32}, out)
        parts.append(out)
    io.gather_features(parts, work / "pixels.h5")
    return {}


def _features(work):
    from gantrace import io

    _, X, _ = io.read_features(work / "pixels.h5")
    return np.asarray(X, dtype=np.float32)


def _split(X):
    n_real = max(len(X) // 5, 1)
    return X[n_real:], X[:n_real]  # generated, real


def stage_kmeans(work, n):
    from gantrace.attribution.method import CLUSTERERS

    X = _features(work)
    labels = CLUSTERERS.create({"name": "kmeans"}, n_clusters=4, random_state=0).fit_predict(X)
    return {"clusters": int(len(set(labels.tolist())))}


def stage_agglomerative(work, n):
    from gantrace.attribution.method import CLUSTERERS
    from gantrace.errors import ConfigError

    X = _features(work)
    clusterer = CLUSTERERS.create({"name": "agglomerative", "linkage": "ward"}, n_clusters=4)
    try:
        clusterer.fit_predict(X)
    except ConfigError as err:
        return {"refused": str(err)}
    return {}


def stage_knn(work, n):
    from gantrace.membership.scorers import SCORERS

    gen, real = _split(_features(work))
    scores = SCORERS.create({"name": "knn", "k": 1}).fit(gen).score(real)
    return {"n_generated": len(gen), "n_real": len(real), "finite": bool(np.isfinite(scores).all())}


def stage_cluster_dist(work, n):
    from gantrace.membership.scorers import SCORERS

    gen, real = _split(_features(work))
    SCORERS.create({"name": "cluster_distance", "n_clusters": 10}).fit(gen).score(real)
    return {"n_generated": len(gen), "n_real": len(real)}


def knn_10k_4k(work):
    """k-NN scoring, 10k generated x 4k real, on pixels 32x32 features (rows reused + noise)."""
    from gantrace.membership.scorers import SCORERS

    X = _features(work)
    rng = np.random.default_rng(1)
    take = rng.integers(len(X), size=14_000)
    X = X[take] + rng.normal(0, 1.0, (14_000, X.shape[1])).astype(np.float32)
    gen, real = X[:10_000], X[10_000:]
    t0 = time.perf_counter()
    scorer = SCORERS.create({"name": "knn", "k": 1}).fit(gen)
    fit_s = time.perf_counter() - t0
    scorer.score(real)
    return {"fit_s": fit_s, "dim": int(X.shape[1])}


def worker(stage, work, n, opts):
    # Import outside the timed region: the figures are the stage's own work.
    import gantrace.attribution.method  # noqa: F401
    import gantrace.data.ingest  # noqa: F401
    import gantrace.features  # noqa: F401
    import gantrace.membership.method  # noqa: F401

    base = _rss_mb()
    t0 = time.perf_counter()
    if stage == "simulate":
        extra = stage_simulate(work, n, opts["pool"])
    elif stage == "ingest":
        extra = stage_ingest(work, n, opts["shard_size"])
    elif stage == "knn_10k_4k":
        extra = knn_10k_4k(work)
    else:
        extra = globals()[f"stage_{stage}"](work, n)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "peak_mb": _rss_mb(), "base_mb": base, **extra}))


# ---------------------------------------------------------------- driver


def run_stage(stage, work, n, opts):
    cmd = [sys.executable, __file__, "--worker", stage, "--workdir", str(work), "--sizes", str(n)]
    cmd += ["--pool", str(opts["pool"]), "--shard-size", str(opts["shard_size"])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} at N={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,50000", help="comma-separated image counts")
    ap.add_argument("--pool", type=int, default=256, help="distinct rendered slices per N")
    ap.add_argument("--shard-size", type=int, default=5000)
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--extrapolate-to", type=int, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    opts = {"pool": args.pool, "shard_size": args.shard_size}
    if args.worker:
        worker(args.worker, Path(args.workdir), sizes[0], opts)
        return

    root = Path(args.workdir or tempfile.mkdtemp(prefix="gantrace_scale_"))
    results = {}
    print(f"scratch {root}; pool {args.pool} rendered slices; shards of {args.shard_size}\n")
    head = f"{'N':>7} {'stage':<14}{'wall s':>9}{'µs/img':>9}{'peak MB':>9}{'base MB':>9}  note"
    print(head)
    print("-" * len(head))
    for n in sizes:
        work = root / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for stage in STAGES:
            r = run_stage(stage, work, n, opts)
            results[(n, stage)] = r
            note = ""
            if "refused" in r:
                note = f"REFUSED at N={n}: {r['refused'][:90]}..."
            elif stage in ("knn", "cluster_dist"):
                note = f"{r['n_generated']} generated x {r['n_real']} real"
            print(
                f"{n:>7} {stage:<14}{r['wall_s']:>9.2f}{1e6 * r['wall_s'] / n:>9.0f}"
                f"{r['peak_mb']:>9.0f}{r['base_mb']:>9.0f}  {note}",
                flush=True,
            )
        if n == sizes[-1]:
            r = run_stage("knn_10k_4k", work, n, opts)
            print(
                f"\nk-NN membership, 10,000 generated x 4,000 real, {r['dim']}-D pixels features: "
                f"{r['wall_s']:.2f} s (fit {r['fit_s']:.2f} s), peak {r['peak_mb']:.0f} MB"
            )
        shutil.rmtree(work / "png", ignore_errors=True)

    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        print(f"\ngrowth {a} -> {b} (x{b / a:g} images): wall-time ratio, peak-memory ratio")
        for stage in STAGES:
            ra, rb = results[(a, stage)], results[(b, stage)]
            refused = " (refused at the larger N)" if "refused" in rb else ""
            print(
                f"  {stage:<14} time x{rb['wall_s'] / max(ra['wall_s'], 1e-9):6.1f}   "
                f"memory x{rb['peak_mb'] / ra['peak_mb']:5.2f}{refused}"
            )
    if args.extrapolate_to:
        n, m = sizes[-1], args.extrapolate_to
        print(f"\nEXTRAPOLATED (not measured) from N={n} to N={m}:")
        for stage in STAGES:
            r = results[(n, stage)]
            if stage == "agglomerative":
                continue
            power = 2 if stage == "knn" else 1  # knn: n_generated x n_real distances
            est = r["wall_s"] * (m / n) ** power
            print(f"  {stage:<14} ~{est:8.0f} s  ({'quadratic' if power == 2 else 'linear'} in N)")
        from gantrace.attribution.method import CLUSTERERS
        from gantrace.errors import ConfigError

        try:  # the refusal depends only on the row count: checked without the data
            CLUSTERERS.create({"name": "agglomerative"}, n_clusters=4).fit_predict(np.zeros((m, 1)))
        except ConfigError as err:
            print(f"  agglomerative  REFUSED at N={m} (measured, instant): {err}")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
