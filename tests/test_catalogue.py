"""The method catalogue: config/methods/<id>.yaml merged into a run by id."""

from pathlib import Path

import pytest
import yaml

from gantrace import catalogue
from gantrace.config import validate_config
from gantrace.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "config" / "methods"
SCHEMA = ROOT / "config" / "schema.yaml"
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def entry(cid, **extra):
    base = {
        "id": cid,
        "task": "attribution",
        "team": "T",
        "paper": {
            "source": "P",
            "section": "3",
            "runs": {cid: {"submission": None, "recipe": {"extractor": "pixels"}}},
        },
        "reported": [{"run": cid, "metric": "ari", "split": "test", "value": 1.0, "where": "T"}],
        "features": {"px": {"name": "pixels", "size": 16, "weights_like": "imagenet"}},
        "methods": {cid: {"feature": "px", "clusterer": {"name": "kmeans"}}},
    }
    base.update(extra)
    return base


def write(tmp_path, *entries):
    for e in entries:
        (tmp_path / f"{e['id']}.yaml").write_text(yaml.safe_dump(e))
    return tmp_path


def test_expand_merges_selected_entries_and_applies_overrides(tmp_path):
    write(tmp_path, entry("a_one"), entry("b_two"))
    cfg = {
        "datasets": {},
        "catalogue": {"include": ["b_two"], "override": {"all": {"weights_like": "none"}}},
    }
    origin = catalogue.expand(cfg, tmp_path)
    assert origin == {"b_two": {"id": "b_two", "substitute": False}}
    assert set(cfg["attribution"]["methods"]) == {"b_two"}
    assert cfg["features"]["px"]["weights_like"] == "none"  # override hit a present key


def test_per_extractor_override_sets_keys_and_reaches_concat_parts(tmp_path):
    parts = [{"name": "pixels", "size": 16}, {"name": "lbp"}]
    e = entry("c_cat", features={"px": {"name": "concat", "parts": parts}})
    write(tmp_path, e)
    cfg = {"catalogue": {"override": {"pixels": {"size": 8}}}}
    catalogue.expand(cfg, tmp_path)
    assert cfg["features"]["px"]["parts"][0]["size"] == 8
    assert "size" not in cfg["features"]["px"]["parts"][1]


def test_unknown_id_and_conflicting_feature_are_refused(tmp_path):
    write(tmp_path, entry("a_one"))
    with pytest.raises(ConfigError, match="unknown id.*'nope'"):
        catalogue.expand({"catalogue": {"include": ["nope"]}}, tmp_path)
    cfg = {"features": {"px": {"name": "lbp"}}, "catalogue": {"include": ["a_one"]}}
    with pytest.raises(ConfigError, match="features.px: defined differently"):
        catalogue.expand(cfg, tmp_path)


def test_entry_checks_name_the_file_and_key(tmp_path):
    bad = entry("x_bad", colour="red")
    (tmp_path / "x_bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"x_bad.yaml: unknown key 'colour'"):
        catalogue.load(tmp_path)
    (tmp_path / "x_bad.yaml").write_text(yaml.safe_dump(entry("other")))
    with pytest.raises(ConfigError, match="must equal the file name"):
        catalogue.load(tmp_path)


def test_no_catalogue_section_changes_nothing():
    cfg = {"datasets": {}}
    assert catalogue.expand(cfg, CATALOGUE) == {} and cfg == {"datasets": {}}


# -- the shipped catalogue ----------------------------------------------------------------
ENTRIES = catalogue.load(CATALOGUE)


# Every team of the 2024 overview (A. Andrei et al., CEUR-WS Vol-3740, paper-130, Section 4,
# Tables 2 and 3) in every subtask it entered, and the 2023 winner VCMI.
TEAM_TASKS = {
    "AI Multimedia Lab": ("membership", "attribution"),
    "CSMorgan": ("membership", "attribution"),
    "SDVAHCS/UCSD": ("membership", "attribution"),
    "GAN-Amis": ("attribution",),
    "KDE-med-lab": ("membership", "attribution"),
    "KDElab": ("membership",),
    "Biomedical Imaging Goa": ("membership", "attribution"),
    "Inoue Koki": ("membership",),
    "Robot": ("membership",),
    "Shitongcao": ("membership",),
    "VCMI (2023)": ("membership",),
}


def test_catalogue_covers_every_team_of_the_2024_overview_in_each_subtask():
    tasks = {(e["team"], e["task"]) for e in ENTRIES.values()}
    for team, entered in TEAM_TASKS.items():
        for task in entered:
            assert (team, task) in tasks, (team, task)


def test_seed_methods_config_validates_with_every_entry():
    cfg = yaml.safe_load((ROOT / "config" / "seed-methods.yaml").read_text())
    origin = catalogue.expand(cfg, CATALOGUE)
    validate_config(cfg, SCHEMA)
    assert {o["id"] for o in origin.values()} == set(ENTRIES)


def test_weight_free_config_holds_every_entry_that_needs_no_downloaded_weights():
    """config/seed-methods-weight-free.yaml scores, on a benchmark of real slices, exactly
    the membership and attribution entries whose features start from no downloaded weights
    (a benchmark has no subset-attribution task)."""
    cfg = yaml.safe_load((ROOT / "config" / "seed-methods-weight-free.yaml").read_text())
    expected = {
        cid
        for cid, e in ENTRIES.items()
        if e["task"] != "subset_attribution" and not catalogue.downloads_weights(e)
    }
    assert set(cfg["catalogue"]["include"]) == expected
    assert {"shitongcao_pixel_ssim", "aiml_lbp_kmeans"} <= expected
    assert "aiml_resnet50_hier" not in expected  # ImageNet ResNet-50
    assert "csmorgan_multiformer_kmeans" not in expected  # BLIP-2 + DINOv2 inside a concat
    origin = catalogue.expand(cfg, CATALOGUE)  # datasets come from the benchmark's file
    assert {o["id"] for o in origin.values()} == expected


@pytest.mark.parametrize("cid", sorted(ENTRIES))
def test_every_entry_builds_from_registered_parts(cid):
    """Each feature spec builds an extractor and each method its reducer/clusterer/scorer,
    so a misspelt part name fails here rather than hours into a run."""
    from gantrace.attribution.method import AttributionMethod
    from gantrace.features import build_extractor
    from gantrace.membership.method import MembershipMethod
    from gantrace.subset import SubsetMethod

    cfg = yaml.safe_load((ROOT / "config" / "seed-methods.yaml").read_text())
    cfg["catalogue"]["include"] = [cid]
    catalogue.expand(cfg, CATALOGUE)
    validate_config(cfg, SCHEMA)
    e = ENTRIES[cid]
    for name in e.get("features", {}):
        spec = cfg["features"][name]
        build_extractor(spec, key=f"features.{name}")  # learned ones (finetuned) too
    for spec in e["methods"].values():
        if e["task"] == "subset_attribution":
            SubsetMethod.from_spec(spec, 5, 0)
        elif e["task"] == "attribution":
            AttributionMethod(3, clusterer=spec["clusterer"], reducer=spec.get("reducer"))
        else:
            MembershipMethod(
                scorer=spec["scorer"],
                reducer=spec.get("reducer"),
                threshold=spec.get("threshold", "oof_f1"),
            )


def test_docs_are_generated_from_the_catalogue():
    """docs/methods.md holds the catalogue part exactly as generated (the score tables come
    from leaderboard CSVs a run wrote, so only their presence and dates are checked)."""
    from gantrace import papers

    text = (ROOT / "docs" / "methods.md").read_text()
    assert papers.GENERATED in text
    assert papers.catalogue_markdown(ENTRIES) in text, (
        "docs/methods.md is out of date: regenerate it with the command at its top"
    )


def test_docs_command_writes_below_the_marker_with_dated_scores(tmp_path):
    from gantrace import papers

    write(tmp_path, entry("a_one", features={"px": {"name": "pixels", "size": 16}}))
    board = tmp_path / "board.csv"
    board.write_text(
        "dataset,task,split,rank,method,kind,catalogue,substitute,metric,score,score_lo,score_hi,n\n"
        "d,attribution,test,1,a_one,method,a_one,False,ari,0.8125,0.5,0.9,10\n"
        "m,membership,dev,1,a_one,method,a_one,False,auc,0.99,0.9,1.0,10\n"
        "m,membership,test,1,a_one,method,a_one,False,auc,0.61,0.52,0.7,10\n"
    )
    levels = ["level", "image", "image", "image"]  # a set-level row as the leaderboard has
    lines = board.read_text().splitlines()
    lines = [f"{line},{lv}" for line, lv in zip(lines, levels)]
    lines.append("m,membership,test,1,a_one,method,a_one,False,auc,0.7,0.6,0.8,5,group")
    board.write_text("\n".join(lines) + "\n")
    doc = tmp_path / "methods.md"
    doc.write_text(f"# intro\n\n{papers.GENERATED}\nstale\n")
    catalogue.main([str(tmp_path), "--scores", f"demo={board}@2026-01-02", "--write", str(doc)])
    text = doc.read_text()
    assert text.startswith("# intro") and "stale" not in text
    assert "ours: demo (2026-01-02)" in text and "ari 0.812 [0.500, 0.900] (d test)" in text
    assert "auc 0.610 [0.520, 0.700] (m test)" in text and "(m dev)" not in text
    assert "auc 0.700 [0.600, 0.800] (m test, per group)" in text
    assert papers.catalogue_markdown(catalogue.load(tmp_path)) in text
    catalogue.main([str(tmp_path), "--write", str(doc)])
    assert "Our scores" not in doc.read_text()


def test_methods_that_learn_from_labels_skip_unlabelled_datasets(workflow_dir):
    """A test set has no labels: supervised / tuned methods plan no job there, the rest do."""
    import numpy as np
    from conftest import snakemake
    from PIL import Image

    rng = np.random.default_rng(0)
    for role in ("generated", "real_unknown"):
        folder = workflow_dir / "data" / role
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(
                folder / f"{role}_{i}.png"
            )
    cfg = {
        "ingest": {"n_shards": 1, "image_size": 32},
        "datasets": {
            "test_membership": {
                "task": "membership",
                "generated": "data/generated",
                "real_unknown": "data/real_unknown",
            }
        },
        "catalogue": {
            "include": ["goa_resnet50_class_centroids", "shitongcao_pixel_ssim"],
            "override": {"all": {"weights": "none"}},
        },
    }
    (workflow_dir / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow_dir, "all", "-n", "--configfile", "run.yaml")
    planned = set(__import__("re").findall(r"membership/(\w+)\.parquet", proc.stdout))
    assert "shitongcao_pixel_ssim" in planned
    assert "goa_resnet50_class_centroids" not in planned
