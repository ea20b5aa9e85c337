"""On a built benchmark: each generator's data-copying verdict and the membership AUC of
plain pixels cosine 1-NN against the patch matcher and the contrastive (SSL) features.

    python benchmarks/copying_check.py results/benchmark/benchmark/chest64 [--ssl-epochs 5]

Real slices with their truth (used / not used, every real role) come from the first
generator's folders (all generators of a benchmark share the split); AUCs are over all of
them, with 95 % intervals from 1000 resamples of whole groups (groups.csv) within label,
and each method's paired difference to pixels cosine on the same resamples.
The scorers here read no label, so every real slice can be scored.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gantrace.evaluation.bootstrap import resample_weights
from gantrace.evaluation.metrics import weighted_auc
from gantrace.features import build_extractor
from gantrace.membership.copying import DataCopyingTest, authenticity, verdict
from gantrace.membership.scorers import SCORERS

KNN_COSINE = {"name": "knn", "metric": "cosine"}
CALIBRATED = {"name": "calibrated_knn", "metric": "cosine"}
PATCHES = {"name": "patch_match", "patch": 8, "stride": 4}


def load(folder):
    files = sorted(Path(folder).glob("*.png"))
    return [f.stem for f in files], np.stack(
        [np.asarray(Image.open(f).convert("L")) for f in files]
    )


def score(spec, real, generated):
    scorer = SCORERS.create(spec).fit(generated)
    if hasattr(scorer, "fit_reference"):
        scorer.fit_reference(real)
    return scorer.score(real)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a benchmark folder (with membership/, groups.csv)")
    ap.add_argument("--ssl-epochs", type=int, default=5, help="0: no contrastive features")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    root = args.bench
    gens = sorted(p.name for p in (root / "membership").iterdir() if p.is_dir())
    first = gens[0]
    truth = pd.read_csv(root / f"ground_truth/membership_{first}_truth.csv").set_index("image_id")
    groups = pd.read_csv(root / "groups.csv").set_index("image")["group"]
    ids, blocks = [], []
    for role in ("real_used", "real_not_used", "real_unknown"):
        i, x = load(root / "membership" / first / role)
        ids, blocks = ids + i, blocks + [x]
    real = np.concatenate(blocks)
    y, role = truth.loc[ids, "label"].to_numpy(), truth.loc[ids, "role"].to_numpy()
    generated = {g: load(root / f"membership/{g}/generated")[1] for g in gens}
    print(f"{len(real)} real slices ({int(y.sum())} used), generators {gens}", flush=True)

    weights = resample_weights(
        y, args.n_boot, np.random.default_rng(0), groups=groups.loc[ids].astype(str).to_numpy()
    )

    ones = np.ones((1, len(y)), np.float32)

    def auc(s, base):
        """AUC [95 % interval]; and its paired difference to `base`'s on the same resamples."""
        point = float(np.ravel(weighted_auc(y, s, ones))[0])
        reps = np.ravel(weighted_auc(y, s, weights))
        lo, hi = np.percentile(reps, [2.5, 97.5])
        text = f"{point:.3f} [{lo:.3f}, {hi:.3f}]"
        if base is s:
            return text
        diff = reps - np.ravel(weighted_auc(y, base, weights))
        d_lo, d_hi = np.percentile(diff, [2.5, 97.5])
        gap = point - float(np.ravel(weighted_auc(y, base, ones))[0])
        return text + f"; minus pixels32 knn cosine {gap:+.3f} [{d_lo:+.3f}, {d_hi:+.3f}]"

    px32 = build_extractor({"name": "pixels", "size": 32}).transform
    px64 = build_extractor({"name": "pixels", "size": 64}).transform
    spaces = {"pixels32": {"real": px32(real), **{g: px32(v) for g, v in generated.items()}}}
    if args.ssl_epochs:
        from gantrace.features.contrastive import ContrastiveFeature  # torch: only here

        feature = ContrastiveFeature(epochs=args.ssl_epochs)
        t0, prepared = time.time(), feature.prepare(real)
        z, encoder = feature.fit_transform(prepared, prepared, seed=0, device="auto")
        losses = ", ".join(f"{v:.3f}" for v in encoder.loss_history_)
        print(f"contrastive: {len(real)} real slices, loss {losses}, {time.time() - t0:.0f} s")
        spaces["contrastive"] = {
            "real": z,
            **{g: encoder.embed(feature.prepare(v)) for g, v in generated.items()},
        }
    used, held_out = role == "real_used", role == "real_not_used"
    for space, x in spaces.items():
        for g in gens:
            summary, _ = DataCopyingTest(random_state=0).test(
                x["real"][used], x["real"][held_out], x[g]
            )
            share = 1 - authenticity(x["real"][used], x[g]).authentic.mean()
            print(f"{space} {g}: {verdict(summary, share)}", flush=True)
    for g in gens:
        rows = {
            "pixels32 knn cosine": score(
                KNN_COSINE, spaces["pixels32"]["real"], spaces["pixels32"][g]
            ),
            "pixels32 calibrated_knn cosine": score(
                CALIBRATED, spaces["pixels32"]["real"], spaces["pixels32"][g]
            ),
            "pixels64 patch_match 8/4": score(PATCHES, px64(real), px64(generated[g])),
            "pixels32 patch_match 8/4": score(
                PATCHES, spaces["pixels32"]["real"], spaces["pixels32"][g]
            ),
        }
        if "contrastive" in spaces:
            c = spaces["contrastive"]
            rows["contrastive knn cosine"] = score(KNN_COSINE, c["real"], c[g])
            rows["contrastive calibrated_knn cosine"] = score(CALIBRATED, c["real"], c[g])
        base = rows["pixels32 knn cosine"]
        for name, s in rows.items():
            print(f"AUC {g} {name}: {auc(s, base)}", flush=True)


if __name__ == "__main__":
    main()
