import numpy as np
import pandas as pd
import pytest

from gantrace.errors import RunFileError
from gantrace.evaluation.runfiles import (
    allowed_labels,
    check_run_files,
    run_file,
    run_file_rows,
    validate_run_file,
    write_run_file,
)

IDS = [f"img_{i:03d}" for i in range(12)]


def test_round_trip(tmp_path):
    path = tmp_path / "runs" / "run1.txt"
    labels = np.array([1, 0] * 6, dtype=np.int64)
    write_run_file(IDS, labels, path)
    text = path.read_text()
    assert text.splitlines()[:2] == ["img_000,1", "img_001,0"] and text.endswith("\n")
    validate_run_file(path, IDS, {0, 1})
    write_run_file(IDS[::-1], np.arange(1, 13, dtype=float) % 3 + 1, path)  # order kept
    assert path.read_text().splitlines()[0] == "img_011,2"
    validate_run_file(path, IDS, range(1, 4))
    assert list(tmp_path.joinpath("runs").iterdir()) == [path]  # no temp files left


def test_write_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        write_run_file(IDS[:2], [0.5, 1], tmp_path / "r.txt")
    with pytest.raises(ValueError):
        write_run_file(IDS[:2], [1], tmp_path / "r.txt")
    with pytest.raises(ValueError, match="commas"):
        write_run_file(["a,b"], [1], tmp_path / "r.txt")
    assert not (tmp_path / "r.txt").exists()


def _check(tmp_path, text, allowed=(0, 1)):
    path = tmp_path / "run.txt"
    path.write_text(text)
    with pytest.raises(RunFileError) as info:
        validate_run_file(path, IDS, allowed)
    return str(info.value), info.value.problems


def test_every_violation_reported_at_once(tmp_path):
    lines = ["image_id,label"]  # header
    lines += [f"{i},1" for i in IDS[:8]]  # img_008..011 missing
    lines += ["img_000,0", "img_001,0"]  # repeated
    lines += ["ghost_1,1", "ghost_2,0"]  # unknown
    lines += ["img_002,2", "img_003,yes", "img_004,1.0"]  # out of range / not integers
    lines += ["img_005", "img_006,1,extra", ""]  # malformed (the empty line too)
    message, problems = _check(tmp_path, "\n".join(lines) + "\n")
    assert str(tmp_path / "run.txt") in message
    assert "breaks 7 rule(s)" in message
    assert "header" in message
    assert "missing ids (4): img_008, img_009, img_010, img_011" in message
    assert "repeated ids (5)" in message  # img_000..img_004 each appear twice
    assert "unknown ids (2): ghost_1, ghost_2" in message
    assert "labels outside [0, 1] (1): img_002=2" in message
    assert "labels not integers (2)" in message and "'yes'" in message and "'1.0'" in message
    assert "malformed lines (3)" in message and "line 19 has 1 field" in message
    assert len(problems) == 7


def test_single_kinds(tmp_path):
    good = [f"{i},0" for i in IDS]
    message, _ = _check(tmp_path, "")
    assert "empty file" in message and "missing ids (12)" in message and ", ..." in message
    message, problems = _check(tmp_path, "\n".join(good[1:]) + "\n")
    assert list(problems) == ["missing ids"] and "img_000" in message
    message, problems = _check(tmp_path, "\n".join(good + good[:1]) + "\n")
    assert list(problems) == ["repeated ids"]
    message, problems = _check(tmp_path, "\n".join(good) + "\n", allowed=range(1, 4))
    assert list(problems) == ["labels outside [1, 2, 3]"] and "(12)" in message
    message, problems = _check(tmp_path, "\n".join(good).replace(",", ";") + "\n")
    assert "malformed lines (12)" in message
    message, problems = _check(tmp_path, "\n".join(g + " " for g in good) + "\n")
    assert list(problems) == ["labels not integers"]


def test_unreadable_file(tmp_path):
    with pytest.raises(RunFileError, match="cannot read"):
        validate_run_file(tmp_path / "absent.txt", IDS, (0, 1))


# -- what a run file holds: decided once, for the writer and the checker -------------------------
def _membership_table(roles):
    return pd.DataFrame(
        {
            "image_id": [f"r{i}" for i in range(len(roles))],
            "role": roles,
            "decision": [i % 2 for i in range(len(roles))],
        }
    )


def test_run_file_rows_and_labels():
    known = ["real_used", "real_not_used", "real_used"]
    t = _membership_table(known + ["real_unknown", "real_unknown"])
    ids, labels, allowed = run_file("membership", t)
    assert ids == ["r3", "r4"] and labels == [1, 0] and allowed == {0, 1}  # the unknown set
    ids, _, _ = run_file("membership", _membership_table(known))
    assert ids == ["r0", "r1", "r2"]  # no unknown set: every real image
    manifest = pd.DataFrame(
        {"image_id": ["g0", "r0", "g1"], "role": ["generated", "real_used", "generated"]}
    )
    assert run_file_rows("attribution", manifest).tolist() == [True, False, True]
    assert run_file_rows("membership", manifest).tolist() == [False, True, False]
    clusters = pd.DataFrame({"image_id": ["g0", "g1", "g2"], "cluster": [1, 3, 3]})
    assert run_file("attribution", clusters, 4)[2] == {1, 2, 3, 4}
    assert run_file("attribution", clusters)[2] == {1, 2}  # k unknown: 1..k found
    assert allowed_labels("attribution", ["1", "2", "2", "5"]) == {1, 2, 3}


def test_check_run_files_uses_the_manifest(tmp_path):
    manifest = pd.DataFrame(
        {"image_id": ["g0", "g1", "g2", "r0"], "role": ["generated"] * 3 + ["real_used"]}
    )
    good, short = tmp_path / "good.csv", tmp_path / "short.csv"
    write_run_file(["g0", "g1", "g2"], [1, 2, 2], good)
    write_run_file(["g0", "g1"], [1, 2], short)
    lines, summary = check_run_files([good, good], manifest, "attribution", [3, None])
    assert lines == [f"{good}\tOK"] * 2
    assert summary == "2 run file(s), 3 ids each, labels 1..2, 1..3"
    with pytest.raises(RunFileError, match="1 of 2 run file") as err:
        check_run_files([good, short], manifest, "attribution", [3, 3])
    assert f"{short}\tFAILED" in str(err.value) and "missing ids (1): g2" in str(err.value)
