"""The `gantrace` command: `gantrace init` writes a first config from image folders.

    gantrace init membership --generated DIR --real-used DIR --real-not-used DIR \
        [--real-unknown DIR] [-o my.yaml]
    gantrace init attribution --generated DIR [DIR ...|gen=DIR ...] [--n-generators K] [-o my.yaml]

It checks every folder (exists, holds images) and reports all problems at once (exit 2, no
traceback), counts the images per role, looks at the images' headers (mode, size) to set
`ingest.conversions` and `ingest.image_size`, and writes a commented config with weight-free
methods only (nothing to download, no lung segmentation). The written config is checked
against config/schema.yaml before it is written.
"""

import argparse
import copy
import datetime
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import yaml
from PIL import Image

from gantrace.config import validate_config
from gantrace.data.ingest import image_table, list_images, shown_path
from gantrace.errors import ConfigError

CHECKOUT = Path(__file__).resolve().parents[2]  # src/gantrace/cli.py -> the repository
SCHEMA = CHECKOUT / "config" / "schema.yaml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SNIFF = 500  # image headers read per folder to pick conversions and image_size
FEW = 10  # fewer images than this in a role: warn (folds, PCA and k-means need more)
N_SHARDS = 4


class UsageProblems(Exception):
    """Every problem with the command line and folders, one per line."""


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageProblems as err:
        print(f"gantrace init {args.task}: cannot write a config:", file=sys.stderr)
        for line in str(err).splitlines():
            print(f"  {line}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(
        prog="gantrace", description="gantrace: training-data and generator fingerprints"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    init = sub.add_parser(
        "init",
        help="write a first config from image folders",
        description="Check image folders and write a config with weight-free methods.",
    )
    tasks = init.add_subparsers(dest="task", metavar="TASK", required=True)

    mem = tasks.add_parser(
        "membership",
        help="which real images trained the generator",
        description="Membership: generated images and real images (used / not used / unknown).",
    )
    mem.add_argument("--generated", required=True, metavar="DIR", help="generated images")
    mem.add_argument("--real-used", required=True, metavar="DIR", help="real images used")
    mem.add_argument("--real-not-used", required=True, metavar="DIR", help="real images not used")
    mem.add_argument(
        "--real-unknown", metavar="DIR", help="real images to classify (labels hidden)"
    )
    _common(mem, "my_membership.yaml")
    mem.set_defaults(func=init_membership)

    att = tasks.add_parser(
        "attribution",
        help="which generator made each image",
        description=(
            "Attribution: one folder of mixed generated images, or one folder per generator "
            "(gen=DIR, or DIR named after its generator) whose labels score the methods."
        ),
    )
    att.add_argument(
        "--generated",
        required=True,
        nargs="+",
        metavar="DIR|GEN=DIR",
        help="one mixed folder, or one folder per generator",
    )
    att.add_argument(
        "--n-generators",
        type=int,
        metavar="K",
        help="number of generators (default: the number of labelled folders, else estimated)",
    )
    _common(att, "my_attribution.yaml")
    att.set_defaults(func=init_attribution)
    return parser


def _common(parser, default_out):
    parser.add_argument(
        "-o",
        "--output",
        default=default_out,
        metavar="FILE",
        help=f"config to write (default {default_out}); its name is the run's: results/<name>/",
    )
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")


# -- the two tasks ------------------------------------------------------------------------------


def init_membership(args):
    problems = []
    out, run = _output(args, problems)
    roles = [
        ("generated", "--generated", args.generated),
        ("real_used", "--real-used", args.real_used),
        ("real_not_used", "--real-not-used", args.real_not_used),
    ]
    if args.real_unknown is not None:
        roles.append(("real_unknown", "--real-unknown", args.real_unknown))
    found = {role: _check_folder(flag, d, problems) for role, flag, d in roles}
    _same_folder([(flag, d) for _, flag, d in roles], problems)
    if problems:
        raise UsageProblems("\n".join(problems))
    ds = {"task": "membership"} | {role: _abs(d) for role, _, d in roles}
    return _finish(args, out, run, "membership", ds, found)


def init_attribution(args):
    problems = []
    out, run = _output(args, problems)
    sources = _generator_folders(args.generated, problems)
    found = {gen: _check_folder(flag, d, problems) for gen, flag, d in sources}
    _same_folder([(flag, d) for _, flag, d in sources], problems)
    labelled = len(sources) > 1
    k = args.n_generators
    if k is not None and k < 2:
        problems.append(f"--n-generators: {k}; give at least 2 (or leave it out to estimate k)")
    if len(sources) == 1 and sources[0][0]:
        problems.append(
            f"--generated: one labelled folder ({sources[0][0]}) is one generator; give one "
            "folder per generator, or the mixed folder without a name"
        )
    if labelled and k is not None and k < len(sources):
        problems.append(
            f"--n-generators: {k}, fewer than the {len(sources)} generator folders; "
            f"give at least {len(sources)} or leave it out"
        )
    if problems:
        raise UsageProblems("\n".join(problems))
    if labelled:
        generated = {gen: _abs(d) for gen, _, d in sources}
        k = k if k is not None else len(sources)
    else:
        generated = _abs(sources[0][2])
        found = {"generated": found[sources[0][0]]}
    ds = {"task": "attribution", "generated": generated}
    if k is not None:
        ds["n_generators"] = k
    return _finish(args, out, run, "attribution", ds, found)


def _generator_folders(items, problems):
    """(generator name or "", flag text, folder) per --generated item."""
    pairs = []
    for item in items:
        name, sep, folder = item.partition("=")
        if sep and "/" not in name and not Path(item).exists():
            pairs.append((name, f"--generated {name}=", folder))
        else:
            pairs.append((None, "--generated", item))
    if len(pairs) == 1 and pairs[0][0] is None:
        return [("", "--generated", pairs[0][2])]
    named = [p for p in pairs if p[0] is not None]
    if named and len(named) < len(pairs):
        problems.append(
            "--generated: give every folder as GEN=DIR, or none (then each folder's name is "
            "its generator's)"
        )
    out = []
    for name, flag, folder in pairs:
        if name is None:
            name = Path(folder.rstrip("/")).name
            flag = f"--generated {folder}"
        if not NAME.match(name):
            problems.append(
                f"{flag}: generator name {name!r}; use letters, digits, '_', '.', '-' "
                "(write GEN=DIR to name it)"
            )
        out.append((name, flag, folder))
    for name, n in Counter(n for n, *_ in out).items():
        if n > 1:
            problems.append(
                f"--generated: generator name {name!r} occurs {n} times; name the folders "
                "apart with GEN=DIR"
            )
    return out


# -- checks -------------------------------------------------------------------------------------


def _output(args, problems):
    out = Path(args.output)
    run = out.stem
    if out.suffix not in (".yaml", ".yml"):
        problems.append(f"-o: {shown_path(out)!r}; name the config file <run>.yaml")
    if not NAME.match(run):
        problems.append(
            f"-o: {run!r} (the file name without .yaml) names the run and its folder "
            "results/<run>/; use letters, digits, '_', '.', '-'"
        )
    if out.exists() and not args.force:
        problems.append(f"-o: {shown_path(out)} exists; choose another name or add --force")
    elif not out.parent.is_dir():
        problems.append(f"-o: folder {shown_path(out.parent)} does not exist; create it first")
    return out, run


def _check_folder(flag, folder, problems):
    """The folder's image files (gantrace.data.ingest.list_images), or [] with a problem."""
    path = Path(folder).expanduser()
    if not path.exists():
        problems.append(
            f"{flag}: folder {shown_path(folder)!r} does not exist; give the folder that "
            "holds the images"
        )
        return []
    if not path.is_dir():
        problems.append(f"{flag}: {shown_path(folder)!r} is not a folder; give a folder")
        return []
    try:
        return list_images(path, flag)
    except ConfigError as err:
        problems.append(str(err))
        return []


def _same_folder(flag_dirs, problems):
    seen = {}
    for flag, d in flag_dirs:
        key = os.path.realpath(Path(d).expanduser())
        if key in seen:
            problems.append(f"{flag}: the same folder as {seen[key]}; give each role its own")
        else:
            seen[key] = flag


def _abs(folder):
    return str(Path(folder).expanduser().absolute())


def _sniff(files):
    """Counter of (mode, width, height) over up to SNIFF headers per folder, and the files
    Pillow cannot open."""
    seen, unreadable = Counter(), []
    for f in files[:: max(1, len(files) // SNIFF)][:SNIFF]:
        try:
            with Image.open(f) as img:
                seen[(img.mode, img.width, img.height)] += 1
        except Exception:
            unreadable.append(f)
    return seen, unreadable


def _ingest_settings(found):
    """(image_size, conversions, notes) from the images' headers."""
    seen, unreadable = Counter(), []
    for files in found.values():
        s, u = _sniff(files)
        seen += s
        unreadable += u
    modes = {m for m, _, _ in seen}
    sizes = {(w, h) for _, w, h in seen}
    conversions, notes = [], []
    if modes & {"RGB", "RGBA", "P", "LA", "PA", "CMYK", "YCbCr"}:
        conversions.append("grey")
        notes.append("colour images found: converted to 8-bit grey ('grey')")
    if modes & {"I;16", "I;16B", "I;16L", "I", "F"}:
        conversions.append("16bit")
        notes.append("16/32-bit images found: rescaled to 8 bit ('16bit')")
    if len(sizes) == 1 and (size := sizes.pop())[0] == size[1] and 16 <= size[0] <= 4096:
        image_size = size[0]
    else:
        image_size = 256
        if seen:
            conversions.append("resize")
            notes.append("images of several or non-square sizes: resampled to 256x256 ('resize')")
    if unreadable:
        notes.append(
            f"{len(unreadable)} file(s) Pillow cannot open (e.g. {shown_path(unreadable[0])}): "
            "the run stops at ingest and lists them all; remove them or set "
            "ingest.invalid_images: skip"
        )
    return image_size, conversions, notes


# -- the config ---------------------------------------------------------------------------------


def _finish(args, out, run, task, ds, found):
    counts = {role: len(files) for role, files in found.items()}
    image_size, conversions, notes = _ingest_settings(found)
    text = render(task, run, ds, counts, image_size, conversions, notes, _command(out))
    cfg = yaml.safe_load(text)
    problems = []
    try:  # the folders' cross checks (unique ids across roles), then the schema
        image_table(task, ds, N_SHARDS)
        if SCHEMA.exists():
            validate_config(copy.deepcopy(cfg), SCHEMA)
    except ConfigError as err:
        problems.append(str(err))
    if problems:
        raise UsageProblems("\n".join(problems))
    out.write_text(text)
    _print_summary(out, run, task, counts, notes)
    return 0


def _q(path):
    return json.dumps(path)  # a YAML double-quoted string


def render(task, run, ds, counts, image_size, conversions, notes, command):
    today = datetime.date.today().isoformat()
    lines = [
        f"# gantrace config written by `gantrace init {task}` on {today}.",
        "# Run it:",
        f"#   {command}",
        f"# Leaderboard: {leaderboard_path(run)} (run files and logs beside it).",
        "# Every method below is weight-free (nothing to download) and uses whole images, so",
        "# no `segmentation:` block is needed; a method with `region: lung` would need one",
        "# (see config/config.yaml and docs/).",
    ]
    if _schema_knows("run"):
        lines.append(f"run: {run}   # results/{run}/ (unset: this file's name)")
    else:
        lines.append(f"# run: {run}   (results of this config go under results/{run}/)")
    lines += [
        "seed: 0",
        "device: auto          # auto | cpu | cuda | cuda:N",
        "",
        "ingest:",
        f"  n_shards: {N_SHARDS}",
        f"  image_size: {image_size}       # every image must have this size (or 'resize')",
        "  invalid_images: error   # error: stop and list every bad file; skip: leave them out",
        f"  conversions: [{', '.join(conversions)}]"
        + "    # allow: grey (RGB -> L), 16bit (min-max to 8 bit), resize",
    ]
    lines += [f"  # {n}" for n in notes]
    lines += ["", "datasets:", f"  {task}:", f"    task: {task}"]
    if task == "membership":
        for role in ("generated", "real_used", "real_not_used", "real_unknown"):
            if role in ds:
                lines.append(f"    {role}: {_q(ds[role])}   # {counts[role]} images")
        if "real_unknown" not in ds:
            lines.append("    # real_unknown: <folder>   # real images to classify (labels hidden)")
        lines += [
            "",
            "features:   # weight-free extractors",
            "  pixels: {name: pixels, size: 32}   # each image area-downsampled to 32x32",
            "",
            "membership:",
            "  n_folds: 5   # thresholds are cut out of fold on the used / not-used labels",
            "  methods:",
            "    # distance of a real image to its nearest generated image (closer: used)",
            "    pixels_knn: {feature: pixels, scorer: {name: knn, k: 1}}",
            "    # the same distance, calibrated by the distance to the other real images",
            "    pixels_calibrated_knn: {feature: pixels, scorer: {name: calibrated_knn}}",
            "    # density of the generated images over that of the real ones (DOMIAS)",
            "    pixels_domias:",
            "      feature: pixels",
            "      reducer: {name: pca, n_components: 10}",
            "      scorer: {name: domias}",
        ]
    else:
        gen = ds["generated"]
        if isinstance(gen, dict):
            lines.append("    generated:   # one folder per generator: the labels score ARI")
            lines += [f"      {g}: {_q(d)}   # {counts[g]} images" for g, d in gen.items()]
        else:
            lines.append(f"    generated: {_q(gen)}   # {counts['generated']} images, unlabelled")
        if "n_generators" in ds:
            lines.append(f"    n_generators: {ds['n_generators']}")
        else:
            lines.append(
                "    # n_generators: K   # unset: each method estimates k (silhouette, 2..10)"
            )
        lines += [
            "",
            "features:   # weight-free extractors",
            "  spectrum: {name: spectrum}   # radial power spectrum of the noise residual",
            "  dct: {name: dct}             # block-DCT statistics (generator artefacts)",
            "  lbp: {name: lbp}             # local binary pattern histograms (texture)",
            "",
            "attribution:",
            "  methods:",
            "    spectrum_kmeans: {feature: spectrum, clusterer: {name: kmeans}}",
            "    dct_pca_kmeans:",
            "      feature: dct",
            "      reducer: {name: pca, n_components: 0.95}",
            "      clusterer: {name: kmeans}",
            "    lbp_kmeans: {feature: lbp, clusterer: {name: kmeans}}",
        ]
    return "\n".join(lines) + "\n"


def _schema_knows(key):
    if not SCHEMA.exists():
        return False
    return key in yaml.safe_load(SCHEMA.read_text()).get("properties", {})


def _print_summary(out, run, task, counts, notes):
    print(f"{task} images found:")
    width = max(map(len, counts))
    for role, n in counts.items():
        print(f"  {role:<{width}}  {n:>6}")
    for role, n in counts.items():
        if n < FEW:
            print(f"  note: {role} has only {n} images; folds, PCA and k-means want more")
    for n in notes:
        print(f"  note: {n}")
    print(f"wrote {out}")
    print("next:")
    print(f"  {_command(out)}")
    print(f"the leaderboard will be {leaderboard_path(run)}")


def leaderboard_path(run):
    """Where the run's leaderboard is written: results/<run>/ where the workflow knows runs."""
    return f"results/{run}/leaderboard.csv" if _schema_knows("run") else "results/leaderboard.csv"


def _command(out):
    """The run command, from the checkout (Snakemake finds the Snakefile in its folder)."""
    if Path.cwd().resolve() == CHECKOUT:
        return f"snakemake all --cores all --configfile {out}"
    return f"cd {CHECKOUT} && snakemake all --cores all --configfile {out.absolute()}"


if __name__ == "__main__":
    sys.exit(main())
