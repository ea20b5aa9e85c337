"""The README's hand-written configs are valid, and its and the docs' links lead somewhere.

The configs are read out of README.md itself, so the README cannot drift from the schema or
from the parts' parameters.
"""

import copy
import re
from pathlib import Path

import pytest
import yaml

from gantrace.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCHEMA = ROOT / "config" / "schema.yaml"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def yaml_blocks(text):
    return [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)]


CONFIGS = [c for c in yaml_blocks(README.read_text()) if isinstance(c, dict) and "datasets" in c]


def task_of(cfg):
    (task,) = {ds["task"] for ds in cfg["datasets"].values()}
    return task


def test_readme_has_a_config_per_task():
    assert sorted(task_of(c) for c in CONFIGS) == ["attribution", "membership"]


@pytest.mark.parametrize("cfg", CONFIGS, ids=task_of)
def test_readme_config_is_valid_and_builds(cfg):
    """Schema and cross-references, then every part built from its spec (this catches a
    misspelt part parameter, which the schema leaves to the part)."""
    from gantrace.attribution.method import AttributionMethod
    from gantrace.features.base import build_extractor
    from gantrace.membership.method import MembershipMethod

    cfg = validate_config(copy.deepcopy(cfg), SCHEMA)
    for name, spec in cfg["features"].items():
        build_extractor(spec, key=f"features.{name}")
    task = task_of(cfg)
    methods = cfg[task]["methods"]
    assert methods
    for spec in methods.values():
        if task == "attribution":
            AttributionMethod(3, clusterer=spec["clusterer"], reducer=spec.get("reducer"))
        else:
            MembershipMethod(
                scorer=spec["scorer"],
                reducer=spec.get("reducer"),
                threshold=spec.get("threshold", "oof_f1"),
            )


@pytest.mark.parametrize("cfg", CONFIGS, ids=task_of)
def test_readme_config_needs_no_weights_and_no_masks(cfg):
    """The quickstart's promise: weight-free features, whole images (no lung U-Net)."""
    weight_free = {"pixels", "lbp", "spectrum", "dct", "residual"}
    assert {f["name"] for f in cfg["features"].values()} <= weight_free
    task = task_of(cfg)
    assert all(m.get("region", "full") == "full" for m in cfg[task]["methods"].values())
    assert "segmentation" not in cfg


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    """Every relative link of the README and docs/ names a file (and heading) that exists."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", dest.read_text(), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_readme_links_every_docs_page():
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)\)", README.read_text()))
    assert linked == {p.name for p in (ROOT / "docs").glob("*.md")}
