"""config/beyond-seeds.yaml and benchmarks/beyond_seeds.py build valid runs."""

import importlib.util
from pathlib import Path

import pandas as pd
import yaml

from gantrace import catalogue
from gantrace.attribution.method import AttributionMethod
from gantrace.config import validate_config
from gantrace.features import build_extractor
from gantrace.membership.method import MembershipMethod

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"


def load_script():
    spec = importlib.util.spec_from_file_location(
        "beyond_seeds", ROOT / "benchmarks" / "beyond_seeds.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_snippet(root):
    """What `snakemake benchmark` writes: one membership and two attribution datasets."""
    (root / "attribution/test/generated").mkdir(parents=True)
    return {
        "data_root": str(root),
        "datasets": {
            "b_membership_dcgan": {
                "task": "membership",
                "generated": "membership/dcgan/generated",
                "real_used": "membership/dcgan/real_used",
                "real_not_used": "membership/dcgan/real_not_used",
                "real_unknown": "membership/dcgan/real_unknown",
            },
            "b_attribution_dev": {
                "task": "attribution",
                "generated": {g: f"attribution/dev/{g}" for g in ("dcgan", "vae", "ddpm")},
                "n_generators": 3,
            },
            "b_attribution_test": {
                "task": "attribution",
                "generated": "attribution/test/generated",
                "n_generators": 3,
            },
        },
    }


def merged(*configs):
    out = {}
    for cfg in configs:
        for key, value in cfg.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def test_beyond_seeds_config_and_open_set_setting_validate_and_build(tmp_path):
    script = load_script()
    snippet = benchmark_snippet(tmp_path / "bench")
    gantrace_yaml = tmp_path / "bench" / "gantrace.yaml"
    gantrace_yaml.write_text(yaml.safe_dump(snippet, sort_keys=False))
    unseen, known, test = script.open_set_config(gantrace_yaml, tmp_path / "open_set.yaml")
    assert (unseen, known, test) == ("ddpm", "b_attribution_dev_known", "b_attribution_test")
    open_set = yaml.safe_load((tmp_path / "open_set.yaml").read_text())
    assert set(open_set["datasets"][known]["generated"]) == {"dcgan", "vae"}

    methods = yaml.safe_load((ROOT / "config" / "beyond-seeds.yaml").read_text())
    cfg = merged(snippet, methods, open_set)
    origin = catalogue.expand(cfg, ROOT / "config" / "methods")
    validate_config(cfg, SCHEMA)
    assert len({o["id"] for o in origin.values()}) == len(methods["catalogue"]["include"])
    for name, spec in cfg["features"].items():
        if spec["name"] != "finetuned":
            build_extractor(spec, key=f"features.{name}")
    for spec in cfg["membership"]["methods"].values():
        MembershipMethod(scorer=spec["scorer"], reducer=spec.get("reducer"))
    for spec in cfg["attribution"]["methods"].values():
        k = None if spec.get("n_clusters") == "auto" else 3
        AttributionMethod(k, clusterer=spec["clusterer"], reducer=spec.get("reducer"))
    opens = [m for m, s in cfg["attribution"]["methods"].items() if s.get("known_from")]
    assert opens and all(cfg["attribution"]["methods"][m]["datasets"] == [test] for m in opens)


def test_report_tables_split_seed_and_new_methods():
    script = load_script()
    rows = []
    for gen in ("dcgan", "vae"):
        for method, seed, auc in (("vcmi_ensemble", "vcmi_ensemble", 0.6), ("new", "", 0.8)):
            rows.append(
                {
                    "dataset": f"b_membership_{gen}",
                    "task": "membership",
                    "split": "test",
                    "method": method,
                    "catalogue": seed or None,
                    "f1": 0.5,
                    "auc": auc,
                    "kappa": 0.1,
                }
            )
    board = pd.DataFrame(rows).assign(level="image")
    group_row = {**rows[0], "level": "group", "auc": 0.99, "f1": 0.9}  # set-level: left out
    board = pd.concat([board, pd.DataFrame([group_row])], ignore_index=True)
    table = script.membership_table(board)
    assert list(table.index) == ["new", "vcmi_ensemble"]  # best mean AUC first
    assert table.loc["vcmi_ensemble", "seed"] and not table.loc["new", "seed"]
    lines = script.best_lines(table, "mean_auc", "membership")
    assert "vcmi_ensemble" in lines[0] and "0.600" in lines[0]
    assert "new" in lines[1] and "0.800" in lines[1]
