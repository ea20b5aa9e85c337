"""Hostile and odd inputs (issue 8) that tests/test_ingest.py, test_config.py and
test_submission.py do not already cover, and property-based tests: random bytes and random
file names through ingest, random values through the config validator. Every input either
works or is refused with the project's own error naming the file or key.

The kinds already covered elsewhere are listed in benchmarks/reliability_report.py.
"""

import copy
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gantrace import io as gio
from gantrace.attribution.method import AttributionMethod
from gantrace.config import validate_config
from gantrace.data.ingest import BadImage, build_manifest, decode_image, image_table, ingest_shard
from gantrace.errors import ConfigError, GantraceError, ImageError
from gantrace.evaluation.runfiles import validate_run_file, write_run_file

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"


def grey(path, seed=0, size=256):
    arr = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(arr, "L").save(path)
    return arr


def membership_dataset(tmp_path, n=2):
    """generated / real_used / real_not_used folders with `n` good slices each."""
    ds = {"task": "membership"}
    for r, role in enumerate(("generated", "real_used", "real_not_used")):
        (tmp_path / role).mkdir()
        for k in range(n):
            grey(tmp_path / role / f"{role}_{k}.png", seed=10 * r + k)
        ds[role] = str(tmp_path / role)
    return ds


def gate(name, ds, invalid_images="error"):
    """The whole ingest path of a dataset: enumerate, decode every shard, build the manifest,
    store the status tables (as the workflow does). Returns (accepted, rejected, notes)."""
    table = image_table(name, ds, 2)
    statuses = [ingest_shard(g, 256)[2] for _, g in table.groupby("shard")]
    for k, status in enumerate(statuses):
        gio.write_table(status, Path(ds["generated"]).parent / f".status{k}.parquet")
    return build_manifest(statuses, invalid_images, name)


# -- file names ----------------------------------------------------------------------------------


def test_file_names_with_spaces_and_unicode_work_end_to_end(tmp_path):
    ds = membership_dataset(tmp_path)
    grey(tmp_path / "real_used" / "patient 12 slice 3.png", seed=99)
    grey(tmp_path / "real_used" / "Lunge_Größe_肺.png", seed=98)
    accepted, rejected, _ = gate("d", ds)
    ids = set(accepted.image_id)
    assert {"patient 12 slice 3", "Lunge_Größe_肺"} <= ids and not len(rejected)
    run = tmp_path / "run.csv"
    write_run_file(sorted(ids), [0] * len(ids), run)
    validate_run_file(run, ids, {0, 1})


def test_non_utf8_file_name_is_refused_naming_the_file(tmp_path):
    ds = membership_dataset(tmp_path)
    raw = os.fsencode(tmp_path / "real_used") + b"/scan\xff\xfe01.png"
    Path(os.fsdecode(raw)).write_bytes((tmp_path / "real_used" / "real_used_0.png").read_bytes())
    with pytest.raises(ConfigError) as err:
        image_table("d", ds, 2)
    msg = str(err.value)
    assert "datasets.d.real_used" in msg and "scan\\xff\\xfe01.png" in msg
    assert "not valid UTF-8" in msg and "rename" in msg
    msg.encode("utf-8")  # the message itself prints anywhere


def test_comma_in_file_name_is_refused_before_any_job(tmp_path):
    ds = membership_dataset(tmp_path)
    grey(tmp_path / "generated" / "a,b.png")
    with pytest.raises(ConfigError, match=r"a,b\.png: the file name holds a comma"):
        image_table("d", ds, 2)


def test_symlinks_are_followed_and_broken_ones_named(tmp_path):
    ds = membership_dataset(tmp_path)
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    grey(elsewhere / "target.png", seed=7)
    (tmp_path / "real_used" / "linked.png").symlink_to(elsewhere / "target.png")
    accepted, _, _ = gate("d", ds)
    assert "linked" in set(accepted.image_id)
    # a whole role folder may be a link too
    (tmp_path / "gen_link").symlink_to(tmp_path / "generated", target_is_directory=True)
    assert len(image_table("d", dict(ds, generated=str(tmp_path / "gen_link")), 2)) == 7

    (tmp_path / "real_used" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ConfigError) as err:
        image_table("d", ds, 2)
    assert "dangling.png: broken symbolic link" in str(err.value)
    # the library's decoder says the same when handed one directly
    with pytest.raises(BadImage, match="broken symbolic link"):
        decode_image(tmp_path / "real_used" / "dangling.png", 256)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(BadImage, match="unusable symbolic link .Too many levels"):
        decode_image(loop, 256)


# -- sizes and counts ----------------------------------------------------------------------------


def _png_header_only(path, width, height):
    """A PNG that declares width x height 8-bit grey pixels but holds almost no data: what a
    decompression bomb looks like before it is decoded."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.mark.parametrize(
    "width, height, reason",
    [
        (5000, 5000, "exceeds ingest.max_pixels=16777216"),  # over the configured limit
        (40000, 40000, "decompression bomb refused by Pillow"),  # over Pillow's own guard
    ],
)
def test_bomb_sized_png_is_refused_before_decoding(tmp_path, width, height, reason):
    ds = membership_dataset(tmp_path)
    _png_header_only(tmp_path / "real_used" / "bomb.png", width, height)
    with pytest.raises(ImageError) as err:
        gate("d", ds)  # would need width*height bytes if it were decoded
    assert "bomb.png" in str(err.value) and reason in str(err.value)


def test_more_generators_than_images_names_the_key(tmp_path):
    (tmp_path / "gen").mkdir()
    for k in range(3):
        grey(tmp_path / "gen" / f"g{k}.png", seed=k)
    ds = {"task": "attribution", "generated": str(tmp_path / "gen"), "n_generators": 4}
    with pytest.raises(ConfigError, match=r"datasets\.att\.n_generators = 4 but only 3"):
        image_table("att", ds, 2)
    assert len(image_table("att", dict(ds, n_generators=3), 2)) == 3
    # and where images were skipped after parsing, the method still refuses clearly
    with pytest.raises(ConfigError, match="n_generators=4 exceeds the 3 generated images"):
        AttributionMethod(n_clusters=4).fit_predict(np.zeros((3, 2)))


def test_membership_dataset_without_real_images(tmp_path):
    ds = membership_dataset(tmp_path)
    del ds["real_used"], ds["real_not_used"]
    with pytest.raises(ConfigError, match=r"datasets\.d: a membership dataset needs real images"):
        image_table("d", ds, 2)


def test_every_image_bad_leaves_nothing_and_says_so(tmp_path):
    ds = membership_dataset(tmp_path, n=1)
    for role in ("generated", "real_used", "real_not_used"):
        for p in (tmp_path / role).iterdir():
            p.write_bytes(b"")
    with pytest.raises(ImageError, match="no usable image left"):
        gate("d", ds, "skip")


# -- property-based ------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _png_bytes(arr, mode=None):
    import io

    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


GOOD = _png_bytes(np.full((256, 256), 100, np.uint8))


@st.composite
def file_bytes(draw):
    """Random bytes, or a real PNG cut, bit-flipped or with junk appended."""
    kind = draw(st.sampled_from(["random", "cut", "flip", "append", "small"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "cut":
        return GOOD[: draw(st.integers(0, len(GOOD)))]
    if kind == "flip":
        data = bytearray(GOOD)
        for i in draw(st.lists(st.integers(0, len(GOOD) - 1), min_size=1, max_size=8)):
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "append":
        return GOOD + draw(st.binary(max_size=256))
    side = draw(st.integers(1, 40))
    return _png_bytes(np.zeros((side, side * 2), np.uint8))


@FUZZ
@given(data=file_bytes())
def test_random_bytes_are_decoded_or_refused_with_a_reason(tmp_path, data):
    path = tmp_path / "x.png"
    path.write_bytes(data)
    try:
        arr, info = decode_image(path, 256, conversions=("grey", "16bit"), max_pixels=1 << 20)
    except BadImage as err:
        assert str(err)  # a reason, recorded against the file
    else:
        assert arr.shape == (256, 256) and arr.dtype == np.uint8 and info["sha256"]


@FUZZ
@given(blobs=st.lists(file_bytes(), min_size=1, max_size=4))
def test_random_files_pass_the_ingest_gate_or_raise_image_error(tmp_path_factory, blobs):
    tmp = tmp_path_factory.mktemp("gate")
    ds = membership_dataset(tmp, n=1)
    for k, blob in enumerate(blobs):
        (tmp / "real_used" / f"fuzz_{k}.png").write_bytes(blob)
    try:
        accepted, rejected, _ = gate("d", ds, "skip")
    except GantraceError:
        return
    assert len(accepted) + len(rejected) == 3 + len(blobs)
    assert all(r for r in rejected.reason)


_NAME = st.binary(min_size=1, max_size=60).filter(
    lambda b: b"/" not in b and b"\0" not in b and not b.startswith(b".")
)


@FUZZ
@given(names=st.lists(_NAME, min_size=1, max_size=4, unique=True))
def test_random_file_names_are_listed_or_refused_with_config_error(tmp_path_factory, names):
    tmp = tmp_path_factory.mktemp("names")
    ds = membership_dataset(tmp, n=1)
    folder = os.fsencode(tmp / "real_not_used")
    for k, name in enumerate(names):
        path = folder + b"/" + name + b".png"
        with open(path, "wb") as fh:
            fh.write(GOOD if k % 2 else b"junk")
    try:
        table = image_table("d", ds, 2)
    except ConfigError as err:
        str(err).encode("utf-8")  # printable
        return
    statuses = [ingest_shard(g, 256)[2] for _, g in table.groupby("shard")]
    for status in statuses:
        gio.write_table(status, tmp / "status.parquet")  # the ingest job's table
    try:
        accepted, _, _ = build_manifest(statuses, "skip", "d")
    except ImageError:
        return
    run = tmp / "run.csv"
    write_run_file(accepted.image_id, [0] * len(accepted), run)
    validate_run_file(run, accepted.image_id, {0, 1})


def _demo():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(data=st.data())
def test_random_config_values_validate_or_raise_config_error(data):
    cfg = _demo()
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(cfg) if p]
        path = data.draw(st.sampled_from(paths))
        parent = cfg
        for k in path[:-1]:
            parent = parent[k]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=12))] = data.draw(_VALUES)
        else:
            parent[path[-1]] = data.draw(_VALUES)
    before = copy.deepcopy(cfg)
    try:
        validate_config(cfg, SCHEMA)
    except ConfigError as err:
        assert str(err).startswith("invalid config") or "config" in str(err)
    else:
        assert set(before) <= set(cfg)


@FUZZ
@given(cfg=_VALUES)
def test_random_documents_validate_or_raise_config_error(cfg):
    try:
        validate_config(cfg, SCHEMA)
    except ConfigError:
        pass


def test_status_table_with_odd_names_is_stored_and_read_back(tmp_path):
    """Names with spaces, quotes and non-Latin letters survive the Parquet status table."""
    ds = membership_dataset(tmp_path, n=1)
    for name in ("it's here.png", 'say "hi".png', "ünïcödé 肺 #1.png"):
        grey(tmp_path / "generated" / name, seed=len(name))
    table = image_table("d", ds, 1)
    status = ingest_shard(table, 256)[2]
    gio.write_table(status, tmp_path / "s.parquet")
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert list(back.image_id) == list(status.image_id) and back.ok.all()
