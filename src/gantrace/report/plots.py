"""Figures for the visual report: one function per plot, tables or arrays in, a PNG out.

matplotlib is used through its object API on the Agg canvas (no pyplot, no display, no
global backend switch), so every function runs headless and leaves the caller's matplotlib
state alone. Random steps (t-SNE, sample choice) are seeded: the same inputs give the same
picture.

Figures only: the plot stages (`gantrace.stages.plot_*`) read the workflow's files, the
truth (`gantrace.evaluation.truth`) and the scores, and pass tables and arrays here.
"""

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gantrace import io
from gantrace.evaluation.metrics import attribution_metrics
from gantrace.fusion import align_labels

DPI = 100
UNKNOWN = ""  # generator of an image whose generator is not known


# -- common ----------------------------------------------------------------------------------
def _figure(width, height):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out):
    """Write `fig` as PNG through a temporary file (a killed job leaves no partial PNG)."""
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(out)


def _colours(n):
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def _message(ax, text):
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)


def placeholder(out, title, text):
    """A small PNG that says why a plot is empty (e.g. no ground truth), so the report lists it."""
    fig = _figure(6, 2.5)
    ax = fig.add_subplot()
    ax.set_title(title)
    _message(ax, text)
    return _save(fig, out)


def _short(image_id, width=18):
    s = str(image_id)
    return s if len(s) <= width else "…" + s[-(width - 1) :]


# -- attribution -----------------------------------------------------------------------------
def match_clusters(clusters, generators):
    """Match each predicted cluster to a true generator (Hungarian, on the images whose
    generator is known). Returns ({cluster: generator or None}, generator names sorted)."""
    clusters = np.asarray(clusters)
    generators = np.asarray(generators, dtype=object).astype(str)
    known = generators != UNKNOWN
    gen_names = sorted(set(map(str, generators[known])))
    matched = {}
    if known.any():
        codes = np.array([gen_names.index(g) for g in generators[known]])
        aligned = align_labels(clusters[known], codes)
        for c, a in zip(clusters[known].tolist(), aligned.tolist()):
            matched[c] = gen_names[a] if a < len(gen_names) else None
    for c in clusters.tolist():
        matched.setdefault(c, None)
    return matched, gen_names


def _cluster_name(c, g):
    return f"{c} → {g}" if g is not None else f"cluster {c}"


def _cluster_order(matched, gen_names):
    """Clusters matched to generators first (in generator order), then the others by id."""
    return sorted(
        matched,
        key=lambda c: (0, gen_names.index(matched[c]), c) if matched[c] else (1, 0, c),
    )


def aligned_confusion(clusters, generators):
    """Counts of (true generator, predicted cluster) over images whose generator is known.

    Returns (matrix, row names = generators, column names = clusters after Hungarian
    alignment, matched clusters in their generator's column, extra clusters after).
    """
    clusters = np.asarray(clusters)
    generators = np.asarray(generators, dtype=object).astype(str)
    known = generators != UNKNOWN
    matched, gen_names = match_clusters(clusters[known], generators[known])
    order = _cluster_order(matched, gen_names)
    matrix = np.zeros((len(gen_names), len(order)), dtype=np.int64)
    col = {c: j for j, c in enumerate(order)}
    for c, g in zip(clusters[known].tolist(), generators[known]):
        matrix[gen_names.index(g), col[c]] += 1
    return matrix, gen_names, [_cluster_name(c, matched[c]) for c in order]


def plot_confusion(results, out, title=""):
    """Confusion matrices (true generator × predicted cluster, Hungarian-aligned), one panel
    per result in the order given. `results`: {name: (clusters, generators)}; images whose
    generator is unknown ("") are left out. Colour: share of the generator's images
    (row-normalised); text: counts; panel title: ARI and NMI."""
    panels = []
    for name, (clusters, generators) in results.items():
        generators = np.asarray(generators, dtype=object).astype(str)
        known = generators != UNKNOWN
        if known.any():
            m = attribution_metrics(generators[known], np.asarray(clusters)[known])
            panels.append((name, *aligned_confusion(clusters, generators), m, int(known.sum())))
    if not panels:
        return placeholder(out, title or "confusion matrix", "no image has a known generator")
    n_rows_max = max(len(p[2]) for p in panels)
    n_cols_max = max(len(p[3]) for p in panels)
    across = min(3, len(panels))
    down = int(np.ceil(len(panels) / across))
    fig = _figure(across * (2.2 + 0.9 * n_cols_max), down * (1.6 + 0.6 * n_rows_max) + 0.3)
    im = None
    for k, (name, matrix, rows, cols, m, n) in enumerate(panels):
        ax = fig.add_subplot(down, across, k + 1)
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                white = share[i, j] > 0.6
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if white else "black")  # fmt: skip
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows if k % across == 0 else [], fontsize=8)
        ax.set_title(f"{name}\nARI {m['ari']:.3f}, NMI {m['nmi']:.3f}, n={n}", fontsize=9)
    fig.colorbar(im, ax=fig.axes, label="share of the true generator's images", shrink=0.6)
    fig.supxlabel("predicted cluster (→ matched generator)", fontsize=9)
    fig.supylabel("true generator", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def tsne_embedding(features, seed=0, perplexity=30.0, max_dims=50):
    """2-D t-SNE of `features` (rows = images), seeded.

    Columns are standardised and, above `max_dims`, reduced by PCA first (the usual t-SNE
    recipe; it also keeps the run short on large embeddings). Perplexity is capped at
    (n - 1) / 3 so small sets work.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.nan_to_num(np.asarray(features, dtype=np.float64))
    n = len(x)
    if n < 4:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1)
    if x.shape[1] > max_dims:
        x = PCA(n_components=min(max_dims, n - 1), random_state=seed).fit_transform(x)
    p = float(min(perplexity, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=p, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x)


def plot_embedding(xy, clusters, generators, out, title=""):
    """Scatter of a 2-D embedding coloured by predicted cluster and, where known, by true
    generator (a second panel). Clusters take the colour of their Hungarian-matched
    generator, so a perfect clustering looks the same in both panels."""
    xy = np.asarray(xy)
    clusters = np.asarray(clusters)
    generators = (
        np.full(len(clusters), UNKNOWN, dtype=object)
        if generators is None
        else np.asarray(generators, dtype=object).astype(str)
    )
    matched, gen_names = match_clusters(clusters, generators)
    order = _cluster_order(matched, gen_names)
    extra = [c for c in order if matched[c] is None]
    palette = _colours(len(gen_names) + len(extra))
    gen_colour = {g: palette[j] for j, g in enumerate(gen_names)}
    colour = {
        c: gen_colour[matched[c]] if matched[c] else palette[len(gen_names) + extra.index(c)]
        for c in order
    }
    known = generators != UNKNOWN
    panels = 2 if known.any() else 1
    fig = _figure(5.2 * panels + 0.6, 5)
    axes = [fig.add_subplot(1, panels, k + 1) for k in range(panels)]
    kw = {"s": 14, "linewidths": 0}
    for c in order:
        sel = clusters == c
        label = _cluster_name(c, matched[c])
        axes[0].scatter(xy[sel, 0], xy[sel, 1], color=colour[c], label=label, **kw)
    axes[0].set_title("predicted cluster")
    if panels == 2:
        if (~known).any():
            axes[1].scatter(xy[~known, 0], xy[~known, 1], color="0.8", label="unknown", **kw)
        for g in gen_names:
            sel = generators == g
            axes[1].scatter(xy[sel, 0], xy[sel, 1], color=gen_colour[g], label=g, **kw)
        axes[1].set_title("true generator")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(fontsize=8, markerscale=1.5, loc="best", frameon=True)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def residual_spectrum(images, sigma=1.0):
    """Mean noise-residual power spectrum of a stack (log10, zero frequency in the centre)."""
    from gantrace.features.classic import noise_residual  # gantrace.features loads torch

    power = None
    for start in range(0, len(images), 64):
        r = noise_residual(images[start : start + 64], "gaussian", sigma)
        f = np.fft.fft2(r, axes=(1, 2))
        p = (f.real**2 + f.imag**2).sum(axis=0) / (r.shape[1] * r.shape[2])
        power = p if power is None else power + p
    power /= max(len(images), 1)
    return np.log10(np.fft.fftshift(power) + 1e-12)


def plot_generator_montage(groups, out, n_samples=4, title=""):
    """One block per generator (or cluster): `n_samples` sample images in two rows, and
    beside them, as tall as both rows, the mean noise-residual spectrum of all the images
    given for it (large, so single-pixel checkerboard peaks stay visible). `groups`:
    {name: uint8 N×H×W}; the first `n_samples` images are shown. Spectra share one colour
    scale."""
    names = [g for g in groups if len(groups[g])]
    if not names:
        return placeholder(out, title or "generators", "no images")
    spectra = {g: residual_spectrum(groups[g]) for g in names}
    values = np.concatenate([s.ravel() for s in spectra.values()])
    vmin, vmax = np.percentile(values, [1, 99.8])
    per_row = max(1, int(np.ceil(n_samples / 2)))
    fig = _figure(1.7 * (per_row + 2) + 1.0, 3.5 * len(names) + 0.4)
    grid = fig.add_gridspec(2 * len(names), per_row + 2)
    im = None
    for i, g in enumerate(names):
        stack = groups[g]
        for j in range(2 * per_row):
            ax = fig.add_subplot(grid[2 * i + j // per_row, j % per_row])
            ax.set_xticks([])
            ax.set_yticks([])
            if j < min(n_samples, len(stack)):
                ax.imshow(stack[j], cmap="gray", vmin=0, vmax=255)
            else:
                ax.set_axis_off()
            if j % per_row == 0 and j // per_row == 0:
                ax.set_ylabel(f"{g}\n(n={len(stack)})", fontsize=9)
        ax = fig.add_subplot(grid[2 * i : 2 * i + 2, per_row:])
        im = ax.imshow(spectra[g], cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{g}: mean residual spectrum", fontsize=9)
    fig.colorbar(im, ax=fig.axes, label="log10 power", shrink=0.5)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def montage_samples(table, label, n=128, seed=0):
    """{group: up to `n` seeded-random image ids} for `plot_generator_montage`.

    `table` holds image_id, cluster and true_generator ("" unknown): images are grouped by
    their true generator, those without one by the cluster that `label` (a method) gave
    them; generators first, then clusters, each in name order.
    """
    table = table.sort_values("image_id", kind="stable")
    known = table.true_generator != UNKNOWN
    group = np.where(known, table.true_generator, [f"cluster {c} ({label})" for c in table.cluster])
    rng = np.random.default_rng(seed)
    chosen = {}
    for g in sorted(set(group[known.to_numpy()])) + sorted(set(group[~known.to_numpy()])):
        ids = table.image_id[group == g].to_numpy()
        chosen[g] = list(rng.permutation(ids)[:n])
    return chosen


# -- membership ------------------------------------------------------------------------------
def _membership_sets(t):
    """(dev mask, test mask) of a table with role and y (true label, -1 unknown)."""
    unknown = (t.role == "real_unknown").to_numpy()
    return ~unknown, unknown


def plot_score_histograms(tables, out, bins=30, title=""):
    """Per method: scores of used vs not-used dev images, and of the unknown set (split by
    its hidden labels where known). Lines: the threshold(s) the decisions used.

    `tables`: {name: frame with role, y (1 used, 0 not used, -1 unknown), score and
    optionally threshold}.
    """
    if not tables:
        return placeholder(out, title or "membership scores", "no methods")
    sets = {name: _membership_sets(t) for name, t in tables.items()}
    # a column (dev, unknown set) only where some method has images in it
    columns = [
        (k, what)
        for k, what in enumerate(("dev", "unknown set"))
        if any(sel[k].any() for sel in sets.values())
    ]
    if not columns:
        return placeholder(out, title or "membership scores", "no scored images")
    fig = _figure(5 * len(columns), 2.1 * len(tables) + 0.8)
    axes = fig.subplots(len(tables), len(columns), squeeze=False)
    colour = {1: "tab:red", 0: "tab:blue", -1: "0.45"}
    label = {1: "used", 0: "not used", -1: "unknown"}
    # an infinite threshold (F1 best when every image is called used) has no line: words
    endless = {-np.inf: "every image called used", np.inf: "no image called used"}
    for row, (name, t) in enumerate(tables.items()):
        score = t.score.to_numpy(dtype=float)
        y = t.y.to_numpy()
        finite = score[np.isfinite(score)]
        edges = np.histogram_bin_edges(finite if len(finite) else [0, 1], bins=bins)
        thr = t.threshold.to_numpy(dtype=float) if "threshold" in t else None
        for col, (k, what) in enumerate(columns):
            ax, sel = axes[row, col], sets[name][k]
            if not sel.any():  # this method has none where others have some
                ax.set_axis_off()
                continue
            for cls in (1, 0, -1):
                s = sel & (y == cls)
                if s.any():
                    ax.hist(
                        score[s],
                        bins=edges,
                        density=True,
                        histtype="stepfilled" if cls == -1 else "step",
                        alpha=0.35 if cls == -1 else 1.0,
                        linewidth=1.5,
                        color=colour[cls],
                        label=f"{label[cls]} ({int(s.sum())})",
                    )
            if thr is not None:
                values = np.unique(thr[sel][np.isfinite(thr[sel])])
                for j, v in enumerate(values):
                    ax.axvline(
                        v,
                        color="black",
                        linestyle=":" if len(values) > 1 else "--",
                        linewidth=1,
                        label="threshold" if j == 0 else None,
                    )
                for v, say in endless.items():
                    if (thr[sel] == v).any():
                        ax.plot([], [], " ", label=f"threshold: {say}")
            ax.set_title(f"{name}: {what}", fontsize=10)
            ax.locator_params(axis="x", nbins=6)
            ax.set_ylabel("density")
            ax.set_xlabel("score (higher = more likely used)")
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def _labelled_splits(tables):
    """(split, [(name, y, score, decision), ...]) per split ("dev", then "unknown set") with
    both classes labelled for some method; infinite scores clipped so curves can be drawn."""
    for split, pick in (("dev", 0), ("unknown set", 1)):
        labelled = []
        for name, t in tables.items():
            sel = _membership_sets(t)[pick] & (t.y.to_numpy() >= 0)
            y = t.y.to_numpy()[sel].astype(int)
            if len(set(y)) < 2:
                continue
            s = np.nan_to_num(t.score.to_numpy(dtype=float)[sel], neginf=-1e300, posinf=1e300)
            labelled.append((name, y, s, t.decision.to_numpy()[sel].astype(int)))
        if labelled:
            yield split, labelled


def plot_roc_pr(tables, out, title=""):
    """ROC and precision-recall curves of every method, one row per split with both classes
    known (dev; the unknown set where its hidden labels are known). Legend: ROC AUC and
    average precision; the dot marks each method's decisions (its chosen threshold)."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    splits = []
    for split, labelled in _labelled_splits(tables):
        curves = [
            (name, y, s, d, roc_auc_score(y, s), average_precision_score(y, s))
            for name, y, s, d in labelled
        ]
        splits.append((split, sorted(curves, key=lambda c: (-c[4], c[0]))))
    if not splits:
        return placeholder(out, title or "ROC / PR", "no split has both used and not-used labels")
    fig = _figure(11, 4.6 * len(splits) + 0.4)
    axes = fig.subplots(len(splits), 2, squeeze=False)
    palette = _colours(len(tables))
    colour = {name: palette[k] for k, name in enumerate(tables)}
    for row, (split, curves) in enumerate(splits):
        roc_ax, pr_ax = axes[row]
        for name, y, s, d, auc, ap in curves:
            style = {"color": colour[name], "linestyle": "--" if name.startswith("fused_") else "-"}
            fpr, tpr, _ = roc_curve(y, s)
            prec, rec, _ = precision_recall_curve(y, s)
            roc_ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", **style)
            pr_ax.plot(rec, prec, label=f"{name} (AP {ap:.3f})", drawstyle="steps-post", **style)
            tp, fp = int(((d == 1) & (y == 1)).sum()), int(((d == 1) & (y == 0)).sum())
            pos, neg = int((y == 1).sum()), int((y == 0).sum())
            roc_ax.plot(fp / neg, tp / pos, "o", color=colour[name], markersize=6)
            if tp + fp:
                pr_ax.plot(tp / pos, tp / (tp + fp), "o", color=colour[name], markersize=6)
        prevalence = float(np.mean(curves[0][1]))
        roc_ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":")
        pr_ax.axhline(prevalence, color="0.6", linewidth=0.8, linestyle=":")
        roc_ax.set(
            xlabel="false-positive rate",
            ylabel="true-positive rate",
            title=f"ROC, {split} (n={len(curves[0][1])})",
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
        )
        pr_ax.set(
            xlabel="recall",
            ylabel="precision",
            title=f"precision-recall, {split}",
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
        )
        handles, labels = roc_ax.get_legend_handles_labels()
        dot = Line2D([], [], marker="o", color="0.3", linestyle="", label="chosen threshold")
        roc_ax.legend(handles + [dot], labels + ["chosen threshold"], fontsize=8, loc="lower right")
        pr_ax.legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_roc_log_fpr(tables, out, fprs=(0.1, 0.01, 0.001), title=""):
    """ROC curves on a log false-positive-rate axis, one panel per split with both classes
    known: the low-FPR corner privacy audits read (TPR at 10 %, 1 %, 0.1 % FPR, the dotted
    lines). Left of 1 / (not-used images) nothing can be resolved: shaded."""
    from sklearn.metrics import roc_curve  # ~1 s import: only this plot job

    splits = []
    for split, labelled in _labelled_splits(tables):
        curves = [(name, *roc_curve(y, s)[:2], int((y == 0).sum())) for name, y, s, _ in labelled]
        splits.append((split, curves))
    if not splits:
        return placeholder(out, title or "ROC, log FPR", "no split has both classes labelled")
    fig = _figure(6.5 * len(splits), 5)
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    palette = _colours(len(tables))
    colour = {name: palette[k] for k, name in enumerate(tables)}
    for ax, (split, curves) in zip(axes, splits):
        n_neg = curves[0][3]
        floor = 1.0 / n_neg
        low = min(min(fprs), floor) / 2
        for name, fpr, tpr, _ in curves:
            # a step at each not-used image; FPR 0 drawn at the axis' left edge
            ax.step(
                np.maximum(fpr, low),
                tpr,
                where="post",
                color=colour[name],
                linestyle="--" if name.startswith("fused_") else "-",
                label=name,
            )
        ax.axvspan(low, floor, color="0.85", zorder=0, label=f"FPR < 1/{n_neg}: unresolved")
        for rate in fprs:
            ax.axvline(rate, color="0.4", linewidth=0.8, linestyle=":")
            ax.text(rate, 1.01, f"{100 * rate:g} %", ha="center", va="bottom", fontsize=8)
        grid = np.geomspace(low, 1, 200)
        ax.plot(grid, grid, color="0.6", linewidth=0.8, linestyle=":")  # chance
        ax.set_xscale("log")
        ax.set(
            xlabel="false-positive rate (log)",
            ylabel="true-positive rate",
            xlim=(low, 1),
            ylim=(0, 1.06),
        )
        ax.set_title(f"ROC at low FPR, {split} ({n_neg} not used)", pad=14)
        ax.legend(fontsize=7, loc="lower right")  # below the curves' end at (1, 1)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_forest(scores, metric, out, ci=None, title=""):
    """Forest plot of one dataset's scores table (`score_results`): per split, each method's
    `metric` with its interval (`<metric>_lo/_hi`), best first; the best one's interval is
    the shaded band; open markers: tied with the best (paired interval holds 0)."""
    if scores is None or not len(scores) or metric not in scores.columns:
        return placeholder(out, title or "forest plot", "no ground truth: nothing scored")
    # a panel per split and, where set-level rows exist, per level (image, group)
    level = scores.level if "level" in scores.columns else pd.Series("image", scores.index)
    panels = [
        (s, lv, (scores.split == s) & (level == lv))
        for s in ("dev", "test", "all")
        for lv in ("image", "group")
        if ((scores.split == s) & (level == lv)).any()
    ]
    heights = [max(2.0, 0.32 * rows.sum() + 1.2) for *_, rows in panels]
    fig = _figure(8, sum(heights) + 0.4)
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    lo_col, hi_col = f"{metric}_lo", f"{metric}_hi"
    for ax, (split, lv, rows) in zip(axes, panels):
        t = scores[rows]
        split = split if lv == "image" else f"{split}, per group"
        t = t.assign(_nan=t[metric].isna()).sort_values(
            ["_nan", metric, "method"], ascending=[True, False, True]
        )
        y = np.arange(len(t))[::-1]
        best = t.iloc[0]
        has_ci = lo_col in t.columns and t[lo_col].notna().any()
        if has_ci and pd.notna(best[lo_col]):
            ax.axvspan(best[lo_col], best[hi_col], color="tab:blue", alpha=0.15, zorder=0)
        tied = t.get("tied_with_best", pd.Series(False, index=t.index)).astype(bool).to_numpy()
        for k, (_, r) in enumerate(t.iterrows()):
            colour = "tab:blue" if k == 0 else ("tab:orange" if tied[k] else "0.3")
            if has_ci and pd.notna(r[lo_col]):
                ax.plot([r[lo_col], r[hi_col]], [y[k]] * 2, color=colour, linewidth=1.6)
            face = "white" if tied[k] else colour
            ax.plot(r[metric], y[k], "o", color=colour, markerfacecolor=face, markersize=6)
        ax.set_yticks(y, [str(m) for m in t.method], fontsize=8)
        unit = ""
        if "boot_unit" in t.columns:
            unit = "; resampling groups" if best.boot_unit == "group" else "; resampling images"
        width = f"{100 * ci:g} % " if ci else ""
        ax.set_title(
            f"{split} (n={int(best.n)}): {metric}, {width}bootstrap intervals{unit}; "
            f"{int(tied.sum())} tied with the best",
            fontsize=9,
        )
        ax.set_xlabel(metric)
        ax.grid(axis="x", color="0.9")
    handles = [
        Line2D([], [], marker="o", color="tab:blue", label="best (band: its interval)"),
        Line2D([], [], marker="o", color="tab:orange", markerfacecolor="white", label="tied"),
        Line2D([], [], marker="o", color="0.3", label="worse than the best"),
    ]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3)
    if title:
        fig.suptitle(title)
    return _save(fig, out)


# -- segmentation ----------------------------------------------------------------------------
def select_slices(ids, dice=None, n=16):
    """Indices of the slices to show: the `n` worst Dice first where Dice is known (ties by
    id), else `n` spread evenly over the ids in sorted order."""
    ids = np.asarray(ids, dtype=object).astype(str)
    if dice is not None:
        dice = np.asarray(dice, dtype=float)
        scored = np.flatnonzero(np.isfinite(dice))
        if len(scored):
            order = sorted(scored, key=lambda i: (dice[i], ids[i]))
            return np.array(order[:n], dtype=int)
    order = np.argsort(ids, kind="stable")
    if len(order) <= n:
        return order
    return order[np.linspace(0, len(order) - 1, n).round().astype(int)]


_RED = ListedColormap(["red"])


def plot_segmentation_montage(images, masks, out, true_masks=None, ids=None, dice=None, title=""):
    """Slices with the predicted lung mask outlined and lightly filled (red) and, where
    given, the true mask outlined (cyan, dashed). Panels are drawn in the order given (callers put worst Dice first)."""
    n = len(images)
    if not n:
        return placeholder(out, title or "lung masks", "no images")
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(2.6 * cols, 2.75 * rows + 0.5)
    for k in range(n):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
        # the predicted mask also lightly filled: a mask leaking into the air around the
        # body (a common U-Net failure) is then visible at once, not only as edge contours
        pred = np.asarray(masks[k], dtype=bool)
        ax.imshow(np.ma.masked_where(~pred, pred), cmap=_RED, alpha=0.3, vmin=0, vmax=1)
        true = None if true_masks is None else np.asarray(true_masks[k], dtype=bool)
        for m, c, ls in ((pred, "red", "-"), (true, "cyan", "--")):
            if m is not None and m.any() and not m.all():
                ax.contour(m.astype(float), levels=[0.5], colors=c, linewidths=1, linestyles=ls)
        label = _short(ids[k]) if ids is not None else str(k)
        if dice is not None and np.isfinite(dice[k]):
            label += f"\nDice {dice[k]:.3f}"
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color="red", label="predicted")]
    if true_masks is not None:
        handles.append(Line2D([], [], color="cyan", linestyle="--", label="true"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    if title:
        fig.suptitle(title)
    return _save(fig, out)


# -- leaderboard -----------------------------------------------------------------------------
_SORT_JS = """
document.querySelectorAll("th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.from(body.rows);
    var asc = th.dataset.dir !== "asc";
    document.querySelectorAll("th").forEach(function (h) { h.dataset.dir = ""; });
    th.dataset.dir = asc ? "asc" : "desc";
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.getElementById("filter").addEventListener("input", function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll("tbody tr").forEach(function (r) {
    r.style.display = r.textContent.toLowerCase().includes(q) ? "" : "none";
  });
});
"""

_CSS = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th { cursor: pointer; background: #f2f2f2; position: sticky; top: 0; user-select: none; }
th[data-dir="asc"]::after { content: " \\25B2"; }
th[data-dir="desc"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
tr.first td { border-top: 2px solid #888; }
tr.tied td { background: #eef5ff; }
tr.selected td { background: #fff6dd; font-weight: bold; }
"""
TIED = "\u2248"  # the mark of a row tied with the best of its dataset and split


def _notes_list(notes):
    """Lines of text as an escaped HTML list ('' for none)."""
    if not notes:
        return ""
    return "<ul>" + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes) + "</ul>"


def _evaluation_notes(board):
    """What the tie mark, the intervals and the `selected_on_dev` rows mean, for the
    columns the board has (docs/evaluation.md)."""
    from gantrace.evaluation.summary import independence_note  # the console says the same

    notes = []
    if "score_lo" in board.columns:
        notes.append(
            "<code>score_lo</code>–<code>score_hi</code> and every "
            "<code>&lt;metric&gt;_lo</code>–<code>_hi</code>: seeded bootstrap confidence "
            "intervals (config <code>evaluation</code>)."
        )
    if "tied_with_best" in board.columns:
        n = int(board.tied_with_best.astype(str).str.lower().eq("true").sum())
        notes.append(
            f"{TIED} marks a row statistically indistinguishable from the best (rank 1) of its "
            "dataset and split: the bootstrap interval of its difference to the best in the "
            "ranking metric, on the same resamples (<code>diff_lo</code>, "
            f"<code>diff_hi</code>), contains 0 ({n} row(s) here). Their order is not evidence."
        )
    if "kind" in board.columns and (board.kind == "selected").any():
        notes.append(
            "Highlighted <code>selected_on_dev</code> rows: the method ranked first on the dev "
            "set (column <code>selected</code>, its dev score in <code>dev_score</code>), "
            "scored on the test set: the figure to quote as the best method. Rank 1 on test "
            "is the best of N on test and flatters the winner."
        )
    note = independence_note(board) if len(board) else None
    if note:
        notes.append(html.escape(note[0].upper() + note[1:]) + ".")
    return "".join(f"<p>{n}</p>" for n in notes)


def leaderboard_html(board, out, title="gantrace leaderboard", notes=()):
    """A self-contained HTML page (inline CSS and JS, no network): the leaderboard as a
    table sortable by clicking a column header, with a text filter; `notes` (lines of
    text, e.g. the data-copying verdicts) are listed above it."""
    board = board.reset_index(drop=True)
    numeric = [c for c in board.columns if pd.api.types.is_numeric_dtype(board[c])]
    head = "".join(
        f'<th class="{"num" if c in numeric else "text"}">{html.escape(str(c))}</th>'
        for c in board.columns
    )
    rows = []
    for i, r in board.iterrows():
        first = i == 0 or (
            "dataset" in board.columns and r.get("dataset") != board.at[i - 1, "dataset"]
        )
        tied = str(r.get("tied_with_best", "")).lower() == "true"
        selected = r.get("kind") == "selected"
        cells = []
        for c in board.columns:
            v = r[c]
            if c in numeric:
                ok = pd.notna(v)
                shown = "" if not ok else (f"{v:.4f}" if isinstance(v, float) else str(v))
                cells.append(f'<td data-v="{v if ok else ""}">{shown}</td>')
            else:
                s = "" if pd.isna(v) else str(v)
                shown = f"{TIED} {s}" if c == "method" and tied else s
                cells.append(
                    f'<td class="text" data-v="{html.escape(s)}">{html.escape(shown)}</td>'
                )
        classes = " ".join(
            c for c, on in (("first", first), ("tied", tied), ("selected", selected)) if on
        )
        attr = f' class="{classes}"' if classes else ""
        rows.append(f"<tr{attr}>{''.join(cells)}</tr>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>"
        "<p>Click a column header to sort; type to filter rows. Membership is ranked by F1, "
        "attribution by ARI unless a dataset names its metric (columns <code>metric</code>, "
        "<code>score</code>).</p>"
        f"{_evaluation_notes(board)}"
        f"{_notes_list(notes)}"
        "<input id='filter' placeholder='filter…' size='30'>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<script>{_SORT_JS}</script></body></html>\n"
    )
    with io.atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(out)
