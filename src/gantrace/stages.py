"""One function per workflow stage: paths and parameters in, files out.

The Snakemake scripts only adapt `snakemake.input/params/output` to these calls, so every
stage can also be run and tested without Snakemake.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gantrace import io
from gantrace.attribution.method import AttributionMethod
from gantrace.attribution.openset import open_set_labels
from gantrace.benchmark_builder.memorisation import write_report
from gantrace.benchmark_builder.split import split_slices
from gantrace.errors import GantraceError
from gantrace.fusion import build_rule, check_aligned
from gantrace.membership.method import MembershipMethod


def _say(msg):
    print(msg, flush=True)


# -- data ------------------------------------------------------------------------------------
def simulate(params, out_dir):
    from gantrace.data import simulate as sim

    t0 = time.perf_counter()
    plan = sim.write_dataset(params, out_dir)
    _say(f"simulated {len(plan)} images in {time.perf_counter() - t0:.1f} s -> {out_dir}")


INGEST_BLOCK = 256  # rows decoded between progress checks
PROGRESS_EVERY_S = 10.0


def ingest(table, out_images, out_status, cfg, dataset, shard):
    from gantrace.data.ingest import ingest_shard

    t0 = last = time.perf_counter()
    n = len(table)
    ids, blocks, tables = [], [], []
    # Decode in blocks so a long shard logs its progress (a tailed log moves).
    for start in range(0, n, INGEST_BLOCK) if n else [0]:
        i, x, s = ingest_shard(
            table.iloc[start : start + INGEST_BLOCK],
            cfg["image_size"],
            cfg["conversions"],
            cfg["max_pixels"],
        )
        ids += list(i)
        blocks.append(x)
        tables.append(s)
        done, now = min(start + INGEST_BLOCK, n), time.perf_counter()
        if done < n and now - last >= PROGRESS_EVERY_S:
            last = now
            _say(f"shard {shard}: {done}/{n} images read, {done / (now - t0):.0f} images/s")
    images = np.concatenate(blocks)
    status = pd.concat(tables, ignore_index=True)
    attrs = {"dataset": dataset, "shard": int(shard), "n_shards": cfg["n_shards"]}
    io.write_images(out_images, ids, images, attrs)
    io.write_table(status, out_status)
    dt = time.perf_counter() - t0
    _say(
        f"shard {shard}: {len(ids)} accepted, {int((~status.ok).sum())} rejected, "
        f"{len(status) / max(dt, 1e-9):.0f} images/s"
    )


def manifest(status_paths, out_manifest, out_rejected, invalid_images, dataset):
    from gantrace.data.ingest import build_manifest

    tables = [io.read_table(p) for p in status_paths]
    accepted, rejected, notes = build_manifest(tables, invalid_images, dataset)
    for note in notes:
        _say(f"NOTE: {note}")
    for row in rejected.itertuples():
        _say(f"skipped {row.path}: {row.reason}")
    io.write_table(rejected, out_rejected)
    io.write_table(accepted, out_manifest)
    _say(f"{dataset}: {len(accepted)} images accepted, {len(rejected)} rejected")


# -- segmentation ----------------------------------------------------------------------------
def checkpoint_path(out_model):
    """Where `train_unet` keeps its per-epoch training state: beside the model, not an output
    of the rule (Snakemake deletes a failed job's outputs; this must survive a killed job)."""
    out_model = Path(out_model)
    return out_model.with_name(out_model.name.split(".")[0] + ".checkpoint.safetensors")


def train_unet(image_paths, seg, mask_dirs, seed, device, out_model, out_metrics, checkpoint=None):
    """Train and save the lung U-Net. Every epoch's state goes to `checkpoint` (default
    `checkpoint_path(out_model)`), so a killed job resumes after its last finished epoch
    with the same result; the checkpoint is deleted once the model is saved."""
    from gantrace.segmentation.unet import LungUNet, training_pairs

    checkpoint = Path(checkpoint) if checkpoint else checkpoint_path(out_model)

    source = seg["mask_source"]
    groups = {}
    for p in image_paths:
        groups.setdefault(Path(p).parent.parent.name, []).append(p)
    ids, images, masks = [], [], []
    for ds, paths in sorted(groups.items()):
        if source == "simulated":
            if ds not in mask_dirs:
                raise GantraceError(
                    f"segmentation.mask_source: 'simulated' needs simulated datasets, but {ds!r} "
                    "has image folders; use 'folder' (with mask_dir) or 'threshold'"
                )
            i, x, m = training_pairs(paths, "folder", mask_dirs[ds])
        else:
            i, x, m = training_pairs(paths, source, seg.get("mask_dir"))
        ids += list(i)
        images.append(x)
        masks.append(m)
    images, masks = np.concatenate(images), np.concatenate(masks)
    _say(f"training the lung U-Net on {len(ids)} images with {source} masks")
    model = LungUNet(**seg["unet"], seed=seed, device=device)
    model.fit(images, masks, log=sys.stdout, checkpoint=checkpoint)
    model.save(out_model)
    checkpoint.unlink(missing_ok=True)
    metrics = {k: v for k, v in model.metrics_.items()}
    metrics.update(mask_source=source, n_images=len(ids))
    with io.atomic_path(out_metrics) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    _say(f"validation Dice {metrics.get('val_dice', float('nan')):.4f}")


def segment(model_path, images_h5, out_h5, device, num_workers=0):
    from gantrace.segmentation.unet import LungUNet

    model = LungUNet.load(model_path, device=device)
    attrs = {"model": Path(model_path).name}
    stats = model.predict_shard(images_h5, out_h5, attrs=attrs, num_workers=num_workers)
    _say(f"masks: {stats}")


# -- features --------------------------------------------------------------------------------
def embed(images_h5, masks_h5, region, spec, out_h5, seed, device, num_workers):
    from gantrace.features import extract_shard  # imports torch: only in feature jobs

    stats = extract_shard(
        images_h5,
        masks_h5 or None,
        region,
        spec,
        out_h5,
        device=device,
        num_workers=num_workers,
        seed=seed,
        log=sys.stdout,
    )
    _say(f"features: {stats}")


def gather_features(paths, out_h5):
    io.gather_features(paths, out_h5)
    ids = io.read_ids_h5(out_h5)
    _say(f"gathered {len(ids)} rows from {len(paths)} shards")


def train_features(
    feature,
    spec,
    image_paths,
    manifest_path,
    out_features,
    out_models,
    checkpoints,
    seed,
    device,
    train_images=(),
    train_manifest=None,
):
    """A learned feature (CNNs trained on labelled images, cross-fitted) of every image;
    `train_images`/`train_manifest` are another dataset's when the spec has `train_from`."""
    from gantrace.features.finetuned import train_features as train  # imports torch

    train(
        feature,
        dict(spec),
        list(image_paths),
        manifest_path,
        out_features,
        out_models,
        checkpoints,
        seed=seed,
        device=device,
        train_shards=list(train_images),
        train_manifest=train_manifest or None,
        log=sys.stdout,
    )


def fetch_weights(features, out_json):
    """Download the pretrained weights the configured features need; list them in out_json."""
    from gantrace.weights import fetch, required_weights  # imports torch

    fetched = fetch(required_weights(dict(features)), log=sys.stdout)
    with io.atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(fetched, indent=2, sort_keys=True) + "\n")


# -- methods ---------------------------------------------------------------------------------
def _save_models(method, model_dir):
    if model_dir is None:
        return
    parts = method.trained_parts()
    if parts:
        Path(model_dir).mkdir(parents=True, exist_ok=True)
    for role, part in parts.items():
        part.save(Path(model_dir) / f"{role}.safetensors")
        _say(f"saved the trained {role} to {model_dir}/{role}.safetensors")


def attribution(
    features_h5,
    manifest_path,
    spec,
    n_generators,
    seed,
    out,
    model_dir=None,
    known_features=None,
    known_manifest=None,
):
    """Cluster a dataset's generated images. `n_generators` None (or the method's
    `n_clusters: auto`) estimates the count; a method with `known_from` is open set: the
    generators of `known_features`/`known_manifest` are known, the rest found as new."""
    rows, x = io.read_features_by_role(features_h5, manifest_path, {"generated"})
    if spec.get("known_from"):
        known, kx = io.read_features_by_role(known_features, known_manifest, {"generated"})
        method, labels = open_set_labels(
            spec, kx, known.generator, x, n_generators, seed, log=sys.stdout
        )
    else:
        auto = spec.get("n_clusters") == "auto" or n_generators is None
        method = AttributionMethod(
            n_clusters=None if auto else n_generators,
            clusterer=spec["clusterer"],
            reducer=spec.get("reducer"),
            n_clusters_estimator=spec.get("estimate_k"),
            random_state=seed,
        )
        labels = method.fit_predict(x)
        if auto:
            crit = (spec.get("estimate_k") or {}).get("name", "silhouette")
            given = f"n_generators: {n_generators}" if n_generators else "n_generators unset"
            _say(f"estimated {method.n_clusters_} generators by {crit} ({given}):")
            _say(method.k_scores_.to_string(index=False))
    _save_models(method, model_dir)
    table = pd.DataFrame(
        {"image_id": rows.image_id, "cluster": labels.astype(int), "generator": rows.generator}
    )
    io.write_table(table, out)
    _say(f"{spec['name']}: {len(table)} images in {len(set(labels))} clusters")


def membership(features_h5, manifest_path, spec, n_folds, seed, out, model_dir=None):
    gen, gx = io.read_features_by_role(features_h5, manifest_path, {"generated"})
    real, rx = io.read_features_by_role(
        features_h5, manifest_path, {"real_used", "real_not_used", "real_unknown"}
    )
    method = MembershipMethod(
        scorer=spec["scorer"],
        reducer=spec.get("reducer"),
        threshold=spec.get("threshold"),
        used_fraction=spec.get("used_fraction", 0.5),
        n_folds=n_folds,
        random_state=seed,
    )
    result = method.run(gx, rx, real.label.to_numpy())
    _say(method.threshold_note_)
    _save_models(method, model_dir)
    table = pd.concat([real[["image_id", "role", "label"]], result.reset_index(drop=True)], axis=1)
    io.write_table(table, out)
    _say(f"{spec['name']}: scored {len(table)} real images against {len(gen)} generated")


def fusion(task, paths, spec, out, n_folds, seed):
    tables = [io.read_table(p) for p in paths]
    check_aligned(tables, paths)
    rule = build_rule(task, spec, n_folds=n_folds, random_state=seed)
    fused = rule.fuse(tables)
    if getattr(rule, "note_", None):
        _say(rule.note_)
    io.write_table(fused, out)
    _say(f"fused {len(paths)} {task} methods by {spec['rule']}")


# -- scores and run files --------------------------------------------------------------------
def read_truth(path):
    """A truth CSV: `image_id,label` (or with role/generator columns); header optional."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "image_id" not in df.columns:
        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
        df = df.iloc[:, :2]
        df.columns = ["image_id", "label"]
    return df.set_index("image_id")


def _membership_truth(table, truth):
    y = table.label.to_numpy().astype(int).copy()
    if truth is not None and "label" in truth.columns:
        known = table.image_id.isin(truth.index) & (y < 0)
        y[known.to_numpy()] = truth.loc[table.image_id[known], "label"].astype(int).to_numpy()
    split = np.where(table.role == "real_unknown", "test", "dev")
    return y, split


def _attribution_truth(table, truth):
    gen = table.generator.fillna("").astype(str).to_numpy().copy()
    if truth is not None:
        col = "generator" if "generator" in truth.columns else "label"
        missing = (gen == "") & table.image_id.isin(truth.index).to_numpy()
        gen[missing] = truth.loc[table.image_id[missing], col].astype(str).to_numpy()
    return gen


def score(task, dataset, names, fusions, paths, truth_path, out):
    from gantrace.evaluation.metrics import attribution_metrics, membership_metrics

    truth = read_truth(truth_path) if truth_path else None
    rows = []
    for name, path in zip(names, paths):
        t = io.read_table(path)
        kind = "fusion" if name.removeprefix("fused_") in fusions else "method"
        if task == "membership":
            y, split = _membership_truth(t, truth)
            for s in ("dev", "test"):
                sel = (split == s) & (y >= 0)
                if sel.sum() and len(set(y[sel])) == 2:
                    m = membership_metrics(
                        y[sel], t.decision.to_numpy()[sel], t.score.to_numpy()[sel]
                    )
                    rows.append(
                        {"method": name, "kind": kind, "split": s, "n": int(sel.sum()), **m}
                    )
        else:
            gen = _attribution_truth(t, truth)
            sel = gen != ""
            if sel.sum():
                m = attribution_metrics(gen[sel], t.cluster.to_numpy()[sel])
                rows.append(
                    {"method": name, "kind": kind, "split": "all", "n": int(sel.sum()), **m}
                )
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(0, "task", task)
        table.insert(0, "dataset", dataset)
    else:
        _say(f"{dataset}: no ground truth, so no scores (run files are still written)")
        table = pd.DataFrame(columns=["dataset", "task", "method", "kind", "split", "n"])
    io.write_table(table, out)
    _say(table.to_string(index=False))


PRIMARY = {"membership": "f1", "attribution": "ari"}
COLUMNS = ["f1", "kappa", "auc", "accuracy", "precision", "recall", "specificity", "ari", "nmi"]
COLUMNS += ["k_found", "k_true"]  # attribution: clusters predicted vs. true generators


def leaderboard(score_paths, out_csv, metrics=None, catalogue=None):
    """Rank methods per dataset and split by the primary metric: `metrics` maps a dataset to
    its metric (config `datasets.<ds>.metric`), else f1 (membership) / ari (attribution).
    `catalogue` maps a method or fusion name to the catalogue id it came from."""
    metrics = {d: m for d, m in (metrics or {}).items() if m}
    catalogue = catalogue or {}
    tables = [io.read_table(p) for p in score_paths]
    board = pd.concat([t for t in tables if len(t)], ignore_index=True) if tables else None
    if board is None or not len(board):
        board = pd.DataFrame(columns=["dataset", "task", "split", "rank", "method", "kind", "n"])
    else:
        board["metric"] = [metrics.get(d) or PRIMARY[t] for d, t in zip(board.dataset, board.task)]
        board["score"] = [r[r["metric"]] for _, r in board.iterrows()]
        board = board.sort_values(
            ["dataset", "split", "score", "method"], ascending=[True, True, False, True]
        )
        board["rank"] = board.groupby(["dataset", "split"]).cumcount() + 1
        board["catalogue"] = [catalogue.get(m.removeprefix("fused_"), "") for m in board.method]
        cols = ["dataset", "task", "split", "rank", "method", "kind", "catalogue", "metric"]
        cols += ["score", "n"]
        board = board[cols + [c for c in COLUMNS if c in board.columns]]
        for c in ("k_found", "k_true"):
            if c in board.columns:  # counts, blank on membership rows
                board[c] = board[c].astype("Int64")
    with io.atomic_path(out_csv) as tmp:
        board.to_csv(tmp, index=False, float_format="%.4f")
    _say(board.to_string(index=False))


def submission(task, result_path, out_csv, n_generators=None):
    from gantrace.evaluation.runfiles import validate_run_file, write_run_file

    t = io.read_table(result_path)
    if task == "membership":
        if (t.role == "real_unknown").any():
            t = t[t.role == "real_unknown"]
        labels, allowed = t.decision.astype(int), {0, 1}
    else:
        labels = t.cluster.astype(int)
        k = int(n_generators) if n_generators else labels.nunique()  # unknown k: 1..k found
        allowed = set(range(1, k + 1))
    write_run_file(list(t.image_id), list(labels), out_csv)
    validate_run_file(out_csv, list(t.image_id), allowed)
    _say(f"{out_csv}: {len(t)} lines, checked against the run-file rules")


# -- benchmark builder -----------------------------------------------------------------------
def benchmark_split(source, split, seed, out_csv):
    table = split_slices(source, split, seed)
    with io.atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    _say(table.groupby(["used", "part"]).size().to_string())


def benchmark_train(split_csv, spec, resolution, seed, device, out_model, out_losses, checkpoint):
    from gantrace.benchmark_builder.train import train_generator  # imports torch

    train_generator(split_csv, spec, resolution, seed, device, out_model, out_losses, checkpoint)


def benchmark_sample(model_path, n_samples, seed, device, out_npz):
    from gantrace.benchmark_builder.train import sample_generator  # imports torch

    sample_generator(model_path, n_samples, seed, device, out_npz)


def benchmark_report(
    generator, samples_npz, split_csv, resolution, out_grid, out_table, out_summary
):
    write_report(generator, samples_npz, split_csv, resolution, out_grid, out_table, out_summary)


def benchmark_layout(split_csv, generators, sample_paths, bench, root, out_config, out_metadata):
    """The benchmark's folders, truth and config snippet; `sample_paths` in `generators` order."""
    from gantrace.benchmark_builder.layout import write_benchmark  # imports torch

    samples = dict(zip(generators, sample_paths, strict=True))
    write_benchmark(split_csv, samples, bench, root, out_config, out_metadata)
