"""Every catalogue entry implements the paper it cites (issue 15).

For each run of an entry's `paper.runs`, `gantrace.papers.check_run` derives our recipe
from the entry's feature and method specs and the parts built from them, and compares it
key by key with the paper's recipe (or, where the entry declares a deviation, with the
deviation's `ours`). An entry that drifts from its paper fails here.
"""

from pathlib import Path

import pytest
import yaml

from gantrace import catalogue, papers
from gantrace.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "config" / "methods"
FILES = sorted(CATALOGUE.glob("*.yaml"))


def _runs():
    """(entry id, run) for every run of every entry's paper block; read as plain YAML so
    one malformed entry fails its own test, not the collection of all of them."""
    for path in FILES:
        entry = yaml.safe_load(path.read_text())
        runs = entry.get("paper", {}).get("runs") if isinstance(entry.get("paper"), dict) else None
        for run in runs or {"<no paper.runs>": None}:
            yield pytest.param(path.stem, run, id=f"{path.stem}:{run}")


@pytest.mark.parametrize("cid", [p.stem for p in FILES])
def test_entry_has_a_valid_paper_block(cid):
    entry = catalogue.load_entry(CATALOGUE / f"{cid}.yaml")  # raises with every problem
    assert entry["paper"]["runs"], cid
    reported = {r["run"] for r in entry["reported"]}
    assert reported <= set(entry["paper"]["runs"]), (
        f"{cid}: reported figures for runs without a paper recipe: {reported - set(entry['paper']['runs'])}"
    )
    text = yaml.safe_dump(entry).lower()
    assert "not located" not in text, f"{cid}: says 'not located'; give the paper's figures"


@pytest.mark.parametrize(("cid", "run"), list(_runs()))
def test_entry_run_implements_its_paper(cid, run):
    entry = catalogue.load_entry(CATALOGUE / f"{cid}.yaml")
    assert papers.check_run(entry, run) == []


# -- the check itself -----------------------------------------------------------------------
def _entry(**paper_recipe):
    return {
        "id": "x_sim",
        "task": "membership",
        "team": "T",
        "paper": {
            "source": "A. Author, Title, CEUR-WS Vol-3740",
            "section": "3",
            "runs": {"x_sim": {"submission": "run 1", "recipe": paper_recipe}},
        },
        "reported": [
            {"run": "x_sim", "metric": "f1", "split": "test", "value": 0.6, "where": "T1"}
        ],
        "deviations": [],
        "features": {"px": {"name": "pixels", "size": 64}},
        "methods": {
            "x_sim": {"feature": "px", "scorer": {"name": "similarity", "metric": "ssim"}},
            "x_knn": {"feature": "px", "scorer": {"name": "knn", "k": 1}, "threshold": "fraction"},
        },
        "fusion": {"x_vote": {"methods": ["x_sim", "x_knn"], "rule": "majority"}},
    }


def test_recipe_is_derived_from_the_built_method():
    entry = _entry()
    ours = papers.recipe_of(entry, "x_sim")
    assert ours["extractor"] == ["pixels"] and ours["input_size"] == 64
    assert ours["weights"] == "none" and ours["preprocess"] == "none"
    assert ours["scorer"]["name"] == "similarity" and ours["scorer"]["metric"] == "ssim"
    assert ours["decision"] == "oof_f1" and ours["labels"] == "dev"  # the cut learns labels
    assert papers.recipe_of(entry, "x_knn")["labels"] == "none"  # fraction: label-free
    fused = papers.recipe_of(entry, "x_vote")
    assert fused["fusion"] == {"name": "majority"} and fused["extractor"] == ["pixels"]
    assert fused["decision"] == ["oof_f1", "fraction"]  # members differ: the list


def test_a_drifting_entry_fails_and_a_deviation_must_match_ours():
    entry = _entry(extractor="pixels", scorer={"name": "similarity", "metric": "ssim"})
    assert papers.check_run(entry, "x_sim") == []
    entry["methods"]["x_sim"]["scorer"]["metric"] = "cosine"
    (problem,) = papers.check_run(entry, "x_sim")
    assert "x_sim: scorer" in problem and "cosine" in problem
    deviation = {"run": "x_sim", "key": "scorer", "paper": "SSIM", "reason": "r"}
    entry["deviations"] = [{**deviation, "ours": {"name": "similarity", "metric": "cosine"}}]
    assert papers.check_run(entry, "x_sim") == []
    entry["deviations"] = [{**deviation, "ours": {"name": "similarity", "metric": "euclidean"}}]
    assert papers.check_run(entry, "x_sim") != []


def test_a_broken_copy_of_a_shipped_entry_fails(tmp_path):
    """Change one setting of a real entry (a scorer parameter, then the reducer): the
    per-entry check names it."""
    source = CATALOGUE / "goa_resnet50_class_centroids.yaml"
    entry = catalogue.load_entry(source)
    run = entry["id"]
    assert papers.check_run(entry, run) == []
    broken = yaml.safe_load(source.read_text())
    broken["methods"][run]["scorer"]["n_clusters"] += 7
    (tmp_path / source.name).write_text(yaml.safe_dump(broken))
    problems = papers.check_run(catalogue.load_entry(tmp_path / source.name), run)
    assert problems and "scorer" in problems[0]
    broken = yaml.safe_load(source.read_text())
    broken["methods"][run]["reducer"] = {"name": "pca", "n_components": 0.5}
    (tmp_path / source.name).write_text(yaml.safe_dump(broken))
    assert papers.check_run(catalogue.load_entry(tmp_path / source.name), run) != []


def test_paper_block_problems_are_reported_at_once_naming_file_and_key(tmp_path):
    entry = _entry(extractor="pixels", colour="red")
    entry["paper"]["runs"]["x_gone"] = {"submission": None, "recipe": {}}
    entry["reported"][0]["metric"] = "fscore"
    entry["deviations"] = [{"run": "x_sim", "key": "k", "paper": "p", "ours": 1, "reason": ""}]
    path = tmp_path / "x_sim.yaml"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(ConfigError) as err:
        catalogue.load_entry(path)
    text = str(err.value)
    for expected in (
        "paper.runs.x_sim.recipe.colour: unknown recipe key",
        "paper.runs.x_gone: not a method or fusion",
        "reported[0].metric: expected one of",
        "deviations[0].key: unknown recipe key 'k'",
        "deviations[0].reason",
    ):
        assert f"{path}: {expected}" in text, expected
    entry["paper"] = "a string, as before issue 15"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(ConfigError, match="x_sim.yaml: paper: expected a mapping"):
        catalogue.load_entry(path)


def test_substitute_deviations_mark_runs_and_the_fusions_using_them():
    entry = _entry()
    assert catalogue.substitutes(entry) == set()
    entry["deviations"] = [
        {
            "run": "x_knn",
            "key": "extractor",
            "paper": "p",
            "ours": "pixels",
            "reason": "r",
            "substitute": True,
        }
    ]
    assert catalogue.substitutes(entry) == {"x_knn", "x_vote"}
