"""Reliability report (issue 8): kinds of bad input tried, interruptions survived, reruns
compared, counted from a real test run.

    PYTHONPATH=src python benchmarks/reliability_report.py           # ~3-4 min on 2 cores
    PYTHONPATH=src python benchmarks/reliability_report.py --quick   # no workflow runs

It runs pytest on the test files below with GANTRACE_RELIABILITY_REPORT pointing at a
temporary folder and a JUnit XML report, then counts:
  bad inputs     a kind of bad or odd input counts when every test listed for it passed
                 (the catalogue below names the test that tries each kind);
  interruptions  kills survived: written by tests/test_reliability.py only after the killed
                 and rerun workflow matched an uninterrupted run file for file;
  reruns         comparisons of two runs that came out identical (workflow, U-Net resume,
                 thread counts), also written only after they passed.
Exits non-zero when any test failed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = [
    "tests/test_ingest.py",
    "tests/test_config.py",
    "tests/test_submission.py",
    "tests/test_hostile_inputs.py",
    "tests/test_reliability.py",
]

ING = "tests/test_ingest.py::"
HOS = "tests/test_hostile_inputs.py::"
SUB = "tests/test_submission.py::"
CFG = "tests/test_config.py::"
REL = "tests/test_reliability.py::"
BAD = "test_each_bad_file_has_a_reason[<lambda>-"
# kind of bad or odd input -> tests (node ids, or id prefixes ending in "[") that try it
CATALOGUE = {
    "role folder that does not exist": [ING + "test_missing_and_empty_folders_name_the_key"],
    "empty role folder": [ING + "test_missing_and_empty_folders_name_the_key"],
    "zero-byte file": [ING + BAD + "empty file]"],
    "text file named .png": [ING + BAD + "not an image]"],
    "truncated PNG": [ING + "test_truncated_png"],
    "JPEG named .png": [ING + BAD + "JPEG data]"],
    "RGB PNG": [ING + BAD + "RGB]"],
    "RGBA PNG": [ING + BAD + "RGBA]"],
    "palette PNG": [ING + BAD + "P image]"],
    "16-bit PNG": [ING + BAD + "16]"],
    "image of another size": [ING + BAD + "size 128x128]"],
    "image over ingest.max_pixels": [
        ING + "test_pixel_limit_refuses_bombs",
        HOS + "test_bomb_sized_png_is_refused_before_decoding[5000-",
    ],
    "decompression bomb (40000x40000 header)": [
        HOS + "test_bomb_sized_png_is_refused_before_decoding[40000-"
    ],
    "duplicate image id across roles": [ING + "test_duplicate_ids_across_roles"],
    "same content under two names (reported)": [
        ING + "test_same_content_under_two_names_is_reported"
    ],
    "non-UTF-8 file name": [HOS + "test_non_utf8_file_name_is_refused_naming_the_file"],
    "spaces / non-ASCII in file names (accepted)": [
        HOS + "test_file_names_with_spaces_and_unicode_work_end_to_end",
        HOS + "test_status_table_with_odd_names_is_stored_and_read_back",
    ],
    "comma in a file name": [HOS + "test_comma_in_file_name_is_refused_before_any_job"],
    "symlinked file and folder (followed)": [
        HOS + "test_symlinks_are_followed_and_broken_ones_named"
    ],
    "broken symlink": [HOS + "test_symlinks_are_followed_and_broken_ones_named"],
    "symlink loop": [HOS + "test_symlinks_are_followed_and_broken_ones_named"],
    "n_generators larger than the images": [HOS + "test_more_generators_than_images_names_the_key"],
    "membership dataset without generated images": [
        ING + "test_membership_without_generated_images"
    ],
    "membership dataset without real images": [HOS + "test_membership_dataset_without_real_images"],
    "every image of a dataset bad": [HOS + "test_every_image_bad_leaves_nothing_and_says_so"],
    "several bad files at once (all listed)": [ING + "test_manifest_reports_all_bad_files_at_once"],
    "run file with a missing id": [SUB + "test_single_kinds", SUB + "test_every_violation"],
    "run file with a repeated id": [SUB + "test_single_kinds", SUB + "test_every_violation"],
    "run file with unknown ids / header / bad labels / bad lines": [SUB + "test_every_violation"],
    "empty or unreadable run file": [SUB + "test_single_kinds", SUB + "test_unreadable_file"],
    "misspelt config key": [CFG + "test_misspelt_or_bad_keys_are_named["],
    "config reference to an unknown feature / method": [CFG + "test_cross_references_are_checked"],
    "random bytes as an image (hypothesis)": [
        HOS + "test_random_bytes_are_decoded_or_refused_with_a_reason",
        HOS + "test_random_files_pass_the_ingest_gate_or_raise_image_error",
    ],
    "random file names (hypothesis)": [
        HOS + "test_random_file_names_are_listed_or_refused_with_config_error"
    ],
    "random config values (hypothesis)": [
        HOS + "test_random_config_values_validate_or_raise_config_error",
        HOS + "test_random_documents_validate_or_raise_config_error",
    ],
    "pickle posing as a model / weights file": [REL + "test_model_loaders_refuse_pickles"],
    "checkpoint for other data, corrupt or pickled": [
        REL + "test_checkpoint_for_other_data_or_params_is_ignored",
        REL + "test_unreadable_or_pickled_checkpoint_is_ignored_never_unpickled",
    ],
}


def run_tests(out, quick):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES]
    cmd += ["--junitxml", str(out / "junit.xml")]
    if quick:
        cmd += ["-m", "not workflow"]
    env = {
        **os.environ,
        "GANTRACE_RELIABILITY_REPORT": str(out / "records"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    return proc.returncode


def outcomes(junit):
    """{node id: "passed" | "failed" | "skipped"} from pytest's JUnit XML."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module, name = case.get("classname"), case.get("name")
        node = module.replace(".", "/") + ".py::" + name
        if case.find("failure") is not None or case.find("error") is not None:
            result[node] = "failed"
        elif case.find("skipped") is not None:
            result[node] = "skipped"
        else:
            result[node] = "passed"
    return result


def _matching(node_ids, pattern):
    if pattern.endswith("[") or pattern.endswith("-"):
        return [n for n in node_ids if n.startswith(pattern)]
    return [n for n in node_ids if n == pattern or n.startswith(pattern)]


def _records(folder, kind):
    path = folder / f"{kind}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def report(out):
    results = outcomes(out / "junit.xml")
    print("\nBad or odd inputs (kind -> tests that try it)")
    tried = 0
    for kind, patterns in CATALOGUE.items():
        nodes = [n for p in patterns for n in _matching(results, p)]
        ok = bool(nodes) and all(results[n] == "passed" for n in nodes)
        tried += ok
        status = "ok " if ok else ("FAIL" if nodes else "not run")
        print(f"  [{status}] {kind}  ({len(nodes)} test(s))")

    kills = _records(out / "records", "interruptions")
    print("\nInterruptions survived (killed, rerun, outputs identical to an uninterrupted run)")
    for k in kills:
        print(f"  {k['kill']} ({k['signal']}), {k['files_compared']} result files compared")
    reruns = _records(out / "records", "reruns")
    print("\nReruns compared (identical results)")
    for r in reruns:
        print(f"  {r['compared']}: {r['files']} file(s)")

    failed = sorted(n for n, s in results.items() if s == "failed")
    print(
        f"\nSUMMARY: {tried} kinds of bad input tried (of {len(CATALOGUE)} catalogued), "
        f"{len(kills)} interruptions survived, {len(reruns)} reruns compared; "
        f"{len(results)} tests, {len(failed)} failed"
    )
    for n in failed:
        print(f"  FAILED {n}")
    return not failed and tried == len(CATALOGUE)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the workflow runs")
    ap.add_argument("--keep", type=Path, help="write the JUnit XML and records here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gantrace-reliability-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rc = run_tests(out, args.quick)
        ok = report(out)
    sys.exit(0 if ok and rc == 0 else 1)


if __name__ == "__main__":
    main()
