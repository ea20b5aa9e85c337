import numpy as np
import pytest

from gantrace.errors import RunFileError
from gantrace.evaluation.runfiles import validate_run_file, write_run_file

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
