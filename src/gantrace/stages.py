"""One function per workflow stage: paths and parameters in, files out.

The Snakemake scripts only adapt `snakemake.input/params/output` to these calls, so every
stage can also be run and tested without Snakemake. A stage reads, calls the library and
writes; what it computes lives in the packages (data, segmentation, features, membership,
attribution, evaluation, report). Heavy packages (torch, matplotlib) are imported inside
the stages that need them, so the other jobs start without them.
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
from gantrace.benchmark_builder.split import split_slices, split_subsets
from gantrace.data import shards
from gantrace.data.groups import group_column, groups_or_none
from gantrace.errors import GantraceError
from gantrace.evaluation import leaderboard as board
from gantrace.evaluation import repeats as seeds
from gantrace.evaluation import runfiles, scores
from gantrace.evaluation.metrics import confusion_table, dice
from gantrace.evaluation.truth import (
    attribution_truth,
    membership_truth,
    read_truth,
    subset_answers,
    true_mask,
)
from gantrace.fusion import build_rule, check_aligned
from gantrace.membership.copying import DataCopyingTest, authenticity, verdict
from gantrace.membership.method import MembershipMethod
from gantrace.membership.sets import SetInference
from gantrace.registry import spec_name
from gantrace.runlog import say, to_console
from gantrace.subset.method import SubsetMethod


def _say(msg):
    say(msg, sys.stdout)  # a stage talks to stdout, which `logged` sends to the job's log


# -- data ------------------------------------------------------------------------------------
def simulate(params, out_dir):
    from gantrace.data import simulate as sim  # scipy.ndimage: only the data jobs need it
    from gantrace.data import simulate_subsets  # scipy.ndimage: likewise

    t0 = time.perf_counter()
    module = simulate_subsets if params["task"] == "subset_attribution" else sim
    plan = module.write_dataset(params, out_dir)
    _say(f"simulated {len(plan)} images in {time.perf_counter() - t0:.1f} s -> {out_dir}")


INGEST_BLOCK = 256  # rows decoded between progress checks
PROGRESS_EVERY_S = 10.0


def ingest(table, out_images, out_status, cfg, dataset, shard):
    from gantrace.data.ingest import ingest_shard  # image decoders: only the data jobs

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
    shards.write_images(out_images, ids, images, attrs)
    io.write_table(status, out_status)
    dt = time.perf_counter() - t0
    _say(
        f"shard {shard}: {len(ids)} accepted, {int((~status.ok).sum())} rejected, "
        f"{len(status) / max(dt, 1e-9):.0f} images/s"
    )


def manifest(status_paths, out_manifest, out_rejected, invalid_images, dataset, groups=None):
    """The dataset's accepted images (with their `group`: "" everywhere when `groups`, the
    dataset's groups spec, is None) and its rejected ones."""
    from gantrace.data.ingest import build_manifest  # image decoders: only the data jobs

    tables = [io.read_table(p) for p in status_paths]
    accepted, rejected, notes = build_manifest(tables, invalid_images, dataset)
    accepted["group"] = group_column(accepted, groups, f"datasets.{dataset}.groups")
    if groups:
        own = int((accepted.group == accepted.image_id).sum())
        _say(
            f"{accepted.group.nunique()} groups ({own} images in a group of their own: "
            "no pattern match / CSV row)"
        )
    for note in notes:
        _say(f"NOTE: {note}")
    for row in rejected.itertuples():
        _say(f"skipped {row.path}: {row.reason}")
    io.write_table(rejected, out_rejected)
    io.write_table(accepted, out_manifest)
    _say(f"{dataset}: {len(accepted)} images accepted, {len(rejected)} rejected")
    if len(rejected):  # skipped (invalid_images: skip): the console hears of it too
        to_console(
            f"gantrace: {dataset}: {len(rejected)} unusable image(s) skipped "
            f"(ingest.invalid_images: skip); listed with reasons in {out_rejected}"
        )


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
    from gantrace.segmentation.unet import LungUNet, training_pairs  # torch

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
    from gantrace.segmentation.unet import LungUNet  # torch

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
    """A learned feature of every image: CNNs trained on labelled images, cross-fitted
    (`finetuned`), or an encoder trained on the real slices without labels
    (`contrastive`); `train_images`/`train_manifest` are another dataset's when the spec
    has `train_from`."""
    from gantrace.features import contrastive, finetuned  # imports torch

    name = spec_name(spec)
    train = contrastive.train_features if name == "contrastive" else finetuned.train_features
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
            spec,
            kx,
            known.generator,
            x,
            n_generators,
            seed,
            log=sys.stdout,
            known_groups=groups_or_none(known),
        )
    else:
        auto = spec.get("n_clusters") == "auto" or n_generators is None
        method = AttributionMethod.from_spec(spec, None if auto else n_generators, seed)
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
    """Score and decide every real image; with the dataset's groups, each query's group is
    left out of its reference pool and groups get a set-level score (`set_inference`)."""
    (gen, gx), (real, rx), (pool, px), (samples, sx) = io.read_features_by_roles(
        features_h5,
        manifest_path,
        {"generated"},
        {"real_used", "real_not_used", "real_unknown"},
        {"reference_real"},
        {"reference_generated"},
    )
    groups = groups_or_none(real)
    method = MembershipMethod.from_spec(spec, n_folds, seed)
    result = method.run(
        gx,
        rx,
        real.label.to_numpy(),
        groups=groups,
        reference_X=px if len(pool) else None,
        reference_groups=groups_or_none(pool) if len(pool) else None,
        samples_X=sx if len(samples) else None,
    )
    _say(method.threshold_note_)
    if method.reference_note_:
        _say(method.reference_note_)
    if len(pool):
        _say(f"clean reference pool: {len(pool)} reference_real images")
    if len(samples):
        _say(f"reference generator: {len(samples)} samples of a generator trained on them")
    _save_models(method, model_dir)
    table = pd.concat([real[["image_id", "role", "label"]], result.reset_index(drop=True)], axis=1)
    if groups is not None:
        sets = SetInference(**spec.get("set_inference", {}))
        table = sets.apply(table, groups)
        _say(f"{sets.describe()}: {table.group.nunique()} groups")
    io.write_table(table, out)
    _say(f"{spec['name']}: scored {len(table)} real images against {len(gen)} generated")


def copying_line(summary):
    """`<dataset> (<feature>): <verdict>` of a copying.parquet table."""
    row = summary.iloc[0]
    return f"{row['dataset']} ({row['feature']}): {row['verdict']}"


def copying(features_h5, manifest_path, feature, params, seed, dataset, out, out_samples):
    """The data-copying test (T = real_used, held out = real_not_used, generated) and each
    generated image's authenticity, in the feature `feature`: one summary row (`out`) and
    one row per generated image (`out_samples`)."""
    (used, t), (_, p), (gen, q) = io.read_features_by_roles(
        features_h5, manifest_path, {"real_used"}, {"real_not_used"}, {"generated"}
    )
    test = DataCopyingTest(**params, random_state=seed)
    flags = authenticity(t, q, test.metric)
    share = float(1 - flags.authentic.mean())
    try:
        summary, cells = test.test(t, p, q)
        line = verdict(summary, share)
    except GantraceError as err:  # too few images for its cells: say so, keep the run going
        summary, cells = {"c_t": np.nan, "p_value": np.nan, "copies": False}, pd.DataFrame()
        line = f"data-copying test not run: {err}"
    row = {"dataset": dataset, "feature": feature, **summary}
    row.update({"share_non_authentic": share, "verdict": line})
    io.write_table(pd.DataFrame([row]), out)
    samples = flags.assign(
        image_id=gen.image_id.to_numpy(), nn_train_id=used.image_id.to_numpy()[flags.nn_index]
    )
    columns = ["image_id", "nn_train_id", "nn_train", "train_radius", "authentic"]
    io.write_table(samples[columns], out_samples)
    _say(cells.to_string(index=False))
    _say(f"{dataset} ({feature}): {line}")


def subset_attribution(
    features_h5,
    manifest_path,
    spec,
    subsets,
    n_folds,
    seed,
    out,
    train_features=None,
    train_manifest=None,
):
    """The training subset of each generated image of a dataset (`subsets`: its sorted
    subset names; the answer's `cluster` is the 1-based position, the run-file label).
    A method with `train_from` learns from `train_features`/`train_manifest` (another
    dataset's labelled generated images) and ignores the scored dataset's own labels."""
    (rows, x), (real, rx) = io.read_features_by_roles(
        features_h5, manifest_path, {"generated"}, {"real_subset"}
    )
    index = {s: i for i, s in enumerate(subsets)}
    method = SubsetMethod.from_spec(spec, n_folds, seed)
    labels, train = np.full(len(rows), -1), None
    if train_features:
        trows, tx = io.read_features_by_role(train_features, train_manifest, {"generated"})
        known = trows.generator.astype(str).isin(index).to_numpy()
        train = (tx[known], trows.generator[known].map(index).to_numpy())
        _say(f"training on {int(known.sum())} labelled images of {spec['train_from']}")
    else:
        labels = rows.generator.astype(str).map(index).fillna(-1).astype(int).to_numpy()
    pred = method.run(
        x,
        rx,
        real.generator.astype(str).map(index).to_numpy(),
        len(subsets),
        labels=labels,
        train=train,
    )
    table = pd.DataFrame(
        {
            "image_id": rows.image_id,
            "subset": [subsets[i] for i in pred],
            "cluster": pred.astype(int) + 1,
            "generator": rows.generator.astype(str),
        }
    )
    io.write_table(table, out)
    counts = table.subset.value_counts().sort_index()
    _say(
        f"{spec['name']}: {len(table)} images -> "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )


def subset_confusion(names, paths, truth_path, out_csv):
    """Every method's and fusion's confusion matrix (long: method, true, predicted, count)
    over the generated images whose subset is known; empty without ground truth."""
    truth, tables = read_truth(truth_path), []
    for name, path in zip(names, paths, strict=True):
        true, pred = subset_answers(io.read_table(path), truth)
        sel = true != ""
        if sel.any():
            tables.append(confusion_table(true[sel], pred[sel]).assign(method=name))
    columns = ["method", "true", "predicted", "count"]
    table = (
        pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)
    )
    with io.atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    _say(table.to_string(index=False) if len(table) else "no ground truth: empty confusion table")


def fusion(task, paths, spec, out, n_folds, seed, manifest_path=None):
    """Fuse the methods' result tables; a rule that draws folds keeps each group of the
    manifest (`manifest_path`, where given) in one fold."""
    tables = [io.read_table(p) for p in paths]
    check_aligned(tables, paths)
    rule = build_rule(task, spec, n_folds=n_folds, random_state=seed)
    groups = None
    if manifest_path:
        man = io.read_table(manifest_path).set_index("image_id")
        if "group" in man:
            groups = groups_or_none(man.loc[list(tables[0].image_id)])
    fused = rule.fuse(tables, groups)
    if getattr(rule, "note_", None):
        _say(rule.note_)
    if task == "membership" and groups is not None:  # the fused scores' group rows
        sets = SetInference(**spec.get("set_inference", {}))
        fused = sets.apply(fused, groups)
        _say(f"{sets.describe()}: {fused.group.nunique()} groups")
    io.write_table(fused, out)
    _say(f"fused {len(paths)} {task} methods by {spec['rule']}")


# -- scores and run files --------------------------------------------------------------------
def score(
    task,
    dataset,
    names,
    fusions,
    paths,
    truth_path,
    out,
    manifest_path=None,
    metric=None,
    evaluation=None,
    seed=0,
):
    """Score every result table of a dataset with bootstrap intervals (`evaluation`: n_boot,
    ci, fpr); whole groups are resampled where the manifest's `group` column names them."""
    results = {name: io.read_table(path) for name, path in zip(names, paths)}
    groups = None
    if manifest_path:
        man = io.read_table(manifest_path)
        if "group" in man.columns and (man.group.fillna("").astype(str) != "").any():
            groups = dict(zip(man.image_id, man.group.fillna("").astype(str)))
    t0 = time.perf_counter()
    table = scores.score_results(
        task, dataset, results, fusions, read_truth(truth_path), groups, metric, evaluation, seed
    )
    if not len(table):
        _say(f"{dataset}: no ground truth, so no scores (run files are still written)")
    else:
        unit = "groups" if (table.boot_unit == "group").all() else "images (assumed independent)"
        _say(f"bootstrap over {unit} in {time.perf_counter() - t0:.1f} s")
    io.write_table(table, out)
    _say(table.to_string(index=False))


def repeats(task, dataset, methods, paths, truth_path, out, seed=0):
    """Mean and sd of each metric of the `methods` over their repeats: `paths` holds each
    method's result tables (repeat 0, seed `seed`, first; repeat r ran with seed + r), the
    methods one after another, as many per method."""
    n = len(paths) // max(len(methods), 1)
    tables = {m: paths[k * n : (k + 1) * n] for k, m in enumerate(methods)}
    truth = read_truth(truth_path)
    per_run = [
        scores.score_results(task, dataset, {m: io.read_table(p)}, (), truth).assign(repeat=r)
        for m, runs in tables.items()
        for r, p in enumerate(runs)
    ]
    table = seeds.summarise(per_run)
    io.write_table(table, out)
    _say(f"{dataset}: {len(methods)} stochastic method(s), {n} seeds each ({seed}..{seed + n - 1})")
    _say(table.to_string(index=False) if len(table) else "no ground truth: nothing to summarise")


def leaderboard(score_paths, out_csv, metrics=None, catalogue=None, dev_datasets=None, repeats=()):
    """Rank methods per dataset and split by the primary metric: `metrics` maps a dataset to
    its metric (config `datasets.<ds>.metric`), else f1 (membership) / ari (attribution).
    `catalogue` maps a method or fusion name to the catalogue id it came from;
    `dev_datasets` a dataset to its dev dataset (the `selected_on_dev` rows). `repeats`
    (repeats.parquet of each dataset, where evaluation.repeats > 1) adds the primary
    metric's mean and sd over the repeats of the stochastic methods."""
    ranked = board.rank([io.read_table(p) for p in score_paths], metrics, catalogue, dev_datasets)
    if repeats:
        ranked = seeds.join(ranked, [io.read_table(p) for p in repeats])
    with io.atomic_path(out_csv) as tmp:
        ranked.to_csv(tmp, index=False, float_format="%.4f")
    _say(ranked.to_string(index=False))


def submission(task, result_path, out_csv, n_generators=None):
    ids, labels, allowed = runfiles.run_file(task, io.read_table(result_path), n_generators)
    runfiles.write_run_file(ids, labels, out_csv)
    runfiles.validate_run_file(out_csv, ids, allowed)
    _say(f"{out_csv}: {len(ids)} lines, checked against the run-file rules")


def check_submissions(run_files, manifest_path, task, label_counts, out):
    """Re-check a dataset's run files against the ids its manifest says they hold (not their
    own result tables); write one "<path>\tOK" line each under a summary line."""
    lines, summary = runfiles.check_run_files(
        run_files, io.read_table(manifest_path), task, label_counts
    )
    _say("\n".join(lines))
    with io.atomic_path(out) as tmp:
        Path(tmp).write_text(
            f"# {summary}\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8"
        )


# -- plots (matplotlib: imported by these stages only) ---------------------------------------
def _attribution_table(path, truth):
    t = io.read_table(path)
    t["true_generator"] = attribution_truth(t, truth)
    return t


def plot_attribution_tsne(
    scores_path, methods, result_paths, feature_paths, truth_path, out, seed=0
):
    """t-SNE of the best attribution method's features (highest ARI among the methods, not
    fusions, as a fusion has no features of its own), coloured by its clusters and by the
    true generator where known."""
    from gantrace.report import plots  # matplotlib

    t0 = time.perf_counter()
    best, ari = board.best_result(io.read_table(scores_path), methods)
    k = list(methods).index(best)
    table = _attribution_table(result_paths[k], read_truth(truth_path))
    ids, x, _ = io.read_features(feature_paths[k])
    row = {iid: i for i, iid in enumerate(ids)}
    x = x[[row[i] for i in table.image_id]]
    xy = plots.tsne_embedding(x, seed=seed)
    note = f"ARI {ari:.3f}" if np.isfinite(ari) else "no ground truth"
    plots.plot_embedding(
        xy,
        table.cluster.to_numpy(),
        table.true_generator.to_numpy(),
        out,
        title=f"t-SNE of {best} features ({x.shape[1]}-D, {len(x)} images; {note})",
    )
    _say(f"t-SNE of {best} ({len(x)} x {x.shape[1]}) in {time.perf_counter() - t0:.1f} s -> {out}")


def plot_attribution_confusion(scores_path, names, result_paths, truth_path, out):
    """Confusion matrices of every method and fusion, best ARI first."""
    from gantrace.report import plots  # matplotlib

    scored = io.read_table(scores_path)
    truth = read_truth(truth_path)
    ari = dict(zip(scored.method, scored.ari)) if len(scored) and "ari" in scored else {}
    order = sorted(range(len(names)), key=lambda k: (-ari.get(names[k], -np.inf), k))
    results = {}
    for k in order:
        t = _attribution_table(result_paths[k], truth)
        results[names[k]] = (t.cluster.to_numpy(), t.true_generator.to_numpy())
    plots.plot_confusion(results, out)
    _say(f"confusion matrices of {', '.join(results)} -> {out}")


def plot_attribution_montage(
    scores_path,
    names,
    result_paths,
    image_paths,
    truth_path,
    out,
    seed=0,
    n_samples=4,
    n_spectrum=128,
):
    """Sample images and mean residual spectrum per true generator; images whose generator
    is unknown are grouped by the best result's predicted cluster. The spectrum averages up
    to `n_spectrum` seeded-random images of the group."""
    from gantrace.report import plots  # matplotlib

    best, _ = board.best_result(io.read_table(scores_path), names)
    table = _attribution_table(result_paths[list(names).index(best)], read_truth(truth_path))
    chosen = plots.montage_samples(table, best, n_spectrum, seed)
    arrays = shards.read_rows(image_paths, [i for v in chosen.values() for i in v])
    groups = {g: np.stack([arrays[i] for i in v]) for g, v in chosen.items() if v}
    plots.plot_generator_montage(groups, out, n_samples=n_samples)
    _say(f"montage of {len(groups)} groups ({sum(map(len, groups.values()))} images) -> {out}")


def plot_membership(
    names, result_paths, truth_path, out_hist, out_curves, out_log_roc=None, fprs=None
):
    """Score histograms, ROC / PR curves and ROC curves on a log-FPR axis (`fprs` marked)
    of every membership method and fusion."""
    from gantrace.report import plots  # matplotlib

    truth = read_truth(truth_path)
    tables = {}
    for name, path in zip(names, result_paths):
        t = io.read_table(path)
        t["y"], _ = membership_truth(t, truth)
        tables[name] = t
    plots.plot_score_histograms(tables, out_hist)
    plots.plot_roc_pr(tables, out_curves)
    if out_log_roc:
        plots.plot_roc_log_fpr(tables, out_log_roc, fprs or scores.EVALUATION["fpr"])
    _say(f"membership plots of {len(tables)} methods -> {out_hist}, {out_curves}, {out_log_roc}")


def plot_forest(scores_path, metric, out, ci=None, title=""):
    """Forest plot of a dataset: each method's primary `metric` with its interval per
    split, the best one's interval as a band."""
    from gantrace.report import plots  # matplotlib

    table = io.read_table(scores_path)
    plots.plot_forest(table, metric, out, ci=ci, title=title)
    _say(f"forest plot of {table.method.nunique() if len(table) else 0} methods -> {out}")


def plot_segmentation(image_paths, mask_paths, true_mask_dir, out, n=16, title=""):
    """Montage of `n` slices with predicted lung masks; where true masks exist
    (`true_mask_dir/<image_id>.png`), the worst Dice first."""
    from gantrace.report import plots  # matplotlib

    ids, scored = [], []
    for p in mask_paths:
        for iid, m in zip(*shards.read_masks(p)):
            ids.append(iid)
            true = true_mask(true_mask_dir, iid)
            ok = true is not None and true.shape == m.shape
            scored.append(dice(m, true) if ok else np.nan)
    scored = np.array(scored, dtype=float)
    known = np.isfinite(scored)
    pick = plots.select_slices(ids, scored if known.any() else None, n)
    picked = [ids[i] for i in pick]
    imgs = shards.read_rows(image_paths, picked)
    masks = shards.read_rows(mask_paths, picked, dataset="masks")
    true_masks = [true_mask(true_mask_dir, iid) for iid in picked] if known.any() else None
    summary = (
        f"Dice over {int(known.sum())} slices: mean {np.nanmean(scored):.3f}, "
        f"min {np.nanmin(scored):.3f}; worst first"
        if known.any()
        else f"{len(picked)} of {len(ids)} slices (no true masks)"
    )
    plots.plot_segmentation_montage(
        np.stack([imgs[i] for i in picked]) if picked else np.zeros((0, 1, 1), np.uint8),
        [masks[i].astype(bool) for i in picked],
        out,
        true_masks=true_masks,
        ids=picked,
        dice=scored[pick] if known.any() else None,
        title=f"{title}: {summary}" if title else summary,
    )
    _say(f"segmentation montage: {summary} -> {out}")


def plot_leaderboard(csv_path, out, copying=()):
    """The leaderboard CSV as a sortable HTML table; `copying`: the run's data-copying
    summaries, whose verdicts head the page."""
    from gantrace.report import plots  # matplotlib

    ranked = pd.read_csv(csv_path)
    for c in ("rank", "n", "n_groups", "k_found", "k_true"):  # counts with blanks: not floats
        if c in ranked.columns:
            ranked[c] = ranked[c].astype("Int64")
    notes = [copying_line(io.read_table(p)) for p in copying]
    plots.leaderboard_html(ranked, out, notes=notes)
    _say(f"leaderboard table ({len(ranked)} rows) -> {out}")


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


def reference_generator_train(
    paths, spec, resolution, seed, device, out_model, out_losses, checkpoint
):
    """A dataset's reference generator, trained on its clean pool (`reference_real`) only."""
    from gantrace.benchmark_builder.train import train_on_slices  # imports torch

    what = "reference_real (clean pool)"
    train_on_slices(paths, spec, resolution, seed, device, out_model, out_losses, checkpoint, what)


def reference_generator_sample(model_path, seed, device, size, out_paths):
    """One seeded sample of the reference generator per planned path (PNG, size x size:
    the ingest size, so the samples need no conversion)."""
    from gantrace.benchmark_builder.train import write_samples  # imports torch

    write_samples(model_path, list(out_paths), seed, device, size)


def benchmark_report(
    generator, samples_npz, split_csv, resolution, out_grid, out_table, out_summary
):
    write_report(generator, samples_npz, split_csv, resolution, out_grid, out_table, out_summary)


def benchmark_layout(split_csv, generators, sample_paths, bench, root, out_config, out_metadata):
    """The benchmark's folders, truth and config snippet; `sample_paths` in `generators` order."""
    from gantrace.benchmark_builder.layout import write_benchmark  # imports torch

    samples = dict(zip(generators, sample_paths, strict=True))
    write_benchmark(split_csv, samples, bench, root, out_config, out_metadata)


def benchmark_subset_split(source, split, k, seed, out_csv, out_training):
    """k disjoint subsets of the real slices (`out_csv`), and per subset a training split
    (`out_training`, in subset order: its slices `used`) for the generator training rule."""
    table = split_subsets(source, split, k, seed)
    with io.atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    for path, name in zip(out_training, sorted(set(table.subset)), strict=True):
        with io.atomic_path(path) as tmp:
            table.assign(used=(table.subset == name).astype(int)).to_csv(tmp, index=False)
    _say(
        table.groupby("subset")
        .agg(slices=("image_id", "size"), groups=("group", "nunique"))
        .to_string()
    )


def benchmark_subset_layout(split_csv, subsets, sample_paths, bench, root, out_config):
    """The subset-attribution layout, truth and config snippet; `sample_paths` in `subsets` order."""
    from gantrace.benchmark_builder.subset_layout import write_subset_benchmark  # imports torch

    samples = dict(zip(subsets, sample_paths, strict=True))
    write_subset_benchmark(split_csv, samples, bench, root, out_config)
