"""The synthetic GEDI L4A granules have the layout of the real ones and realistic values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from gedidata.domain.gedi import (
    BEAM_NAMES,
    FILL_VALUE,
    REFERENCE_FIELDS,
    REQUIRED_FIELDS,
    delta_time_to_datetime,
    format_granule_name,
    parse_granule_name,
)
from gedidata.offline import (
    shot_fields,
    truncate_file,
    write_granule,
    write_granules,
    write_non_l4a_granule,
)
from gedidata.offline.gedi_granules import CHUNK_SIZE, SHOT_INTERVAL, SUB_ORBIT_GRANULE
from tests.conftest import GEDI_2020

ACQUIRED = datetime(2020, 2, 5, 15, 13, 58)


@pytest.fixture
def real_granule() -> Path:
    if not GEDI_2020.exists():
        pytest.skip("shared/fixtures/gedi is not beside the checkout")
    return GEDI_2020


def _objects(handle: h5py.File) -> dict[str, h5py.Dataset | h5py.Group]:
    """Every link path -> object (hard links listed under each of their names)."""
    found: dict[str, h5py.Dataset | h5py.Group] = {}

    def walk(group: h5py.Group, prefix: str) -> None:
        for name in group:
            item = group[name]
            found[prefix + name] = item
            if isinstance(item, h5py.Group):
                walk(item, prefix + name + "/")

    walk(handle, "")
    return found


def _shared_links(handle: h5py.File) -> set[tuple[str, ...]]:
    """Groups of paths that are hard links to one object."""
    by_address: dict[int, list[str]] = {}
    for path, item in _objects(handle).items():
        by_address.setdefault(h5py.h5o.get_info(item.id).addr, []).append(path)
    return {tuple(sorted(paths)) for paths in by_address.values() if len(paths) > 1}


def _attrs(item: h5py.HLObject) -> dict[str, object]:
    return {
        key: (value.dtype.str, value.tolist()) if isinstance(value, np.ndarray) else value
        for key, value in item.attrs.items()
    }


def _read_beam(handle: h5py.File, beam: str) -> dict[str, np.ndarray]:
    group = handle[beam]
    return {name: group[name][()] for name in group if isinstance(group[name], h5py.Dataset)}


# --- layout ---------------------------------------------------------------------------


def test_layout_matches_the_real_granule(tmp_path: Path, real_granule: Path) -> None:
    path = write_granule(tmp_path, ACQUIRED, orbit=6515, shots_per_beam=20)
    with h5py.File(real_granule, "r") as real, h5py.File(path, "r") as synthetic:
        assert sorted(synthetic) == sorted(real)
        assert [name for name in synthetic if name.startswith("BEAM")] == list(BEAM_NAMES)
        real_objects, synthetic_objects = _objects(real), _objects(synthetic)
        # Same groups and datasets everywhere (beams, sub-groups, ANCILLARY, METADATA).
        assert sorted(synthetic_objects) == sorted(real_objects)
        for path_name, real_item in real_objects.items():
            item = synthetic_objects[path_name]
            assert type(item) is type(real_item), path_name
            assert sorted(item.attrs) == sorted(real_item.attrs), path_name
            if isinstance(real_item, h5py.Dataset):
                assert item.dtype == real_item.dtype, path_name
                assert item.ndim == real_item.ndim, path_name
                assert item.chunks == real_item.chunks, path_name
                assert item.compression == real_item.compression, path_name
                assert item.compression_opts == real_item.compression_opts, path_name
                assert item.maxshape == real_item.maxshape, path_name
                assert item.shuffle == real_item.shuffle, path_name
            if path_name.startswith(("BEAM0000", "BEAM1011")):  # the real attribute values
                assert _attrs(item) == _attrs(real_item), path_name
        # shot_number is one dataset linked into each sub-group, as in the real file.
        assert _shared_links(synthetic) == _shared_links(real)


def test_top_level_beam_datasets_and_storage_match_the_real_granule(
    tmp_path: Path, real_granule: Path
) -> None:
    path = write_granule(tmp_path, ACQUIRED, shots_per_beam=30, full_layout=False)
    with h5py.File(real_granule, "r") as real, h5py.File(path, "r") as synthetic:
        for beam in BEAM_NAMES:
            real_datasets = {
                name: real[beam][name].dtype
                for name in real[beam]
                if isinstance(real[beam][name], h5py.Dataset)
            }
            assert {name: synthetic[beam][name].dtype for name in synthetic[beam]} == (
                real_datasets
            )
            assert synthetic[beam].attrs["description"] == real[beam].attrs["description"]
            agbd, real_agbd = synthetic[beam]["agbd"], real[beam]["agbd"]
            assert agbd.chunks == real_agbd.chunks == (CHUNK_SIZE,)
            assert agbd.compression == real_agbd.compression == "gzip"
            assert agbd.compression_opts == real_agbd.compression_opts == 4
            assert agbd.maxshape == real_agbd.maxshape == (None,)
            assert synthetic[beam]["xvar"].shape == (30, 4)
            assert synthetic[beam]["xvar"].chunks == real[beam]["xvar"].chunks
        assert "ANCILLARY" not in synthetic
        assert "agbd_prediction" not in synthetic["BEAM0000"]


def test_root_and_metadata_attributes(tmp_path: Path) -> None:
    path = write_granule(tmp_path, ACQUIRED, orbit=6515, track=198, version=3)
    assert path.name == format_granule_name(ACQUIRED, 6515, 198, 3)
    assert path.parent == tmp_path
    with h5py.File(path, "r") as handle:
        assert handle.attrs["short_name"] == "GEDI_L4A"
        identification = handle["METADATA/DatasetIdentification"].attrs
        assert identification["shortName"] == "GEDI_L4A"
        assert identification["fileName"] == path.name
        assert identification["PGEVersion"] == "002"
        assert identification["VersionID"] == "03"
        for key in ("creationDate", "uuid", "abstract", "spatialRepresentationType"):
            assert identification[key]
        prediction = handle["BEAM0000/agbd_prediction"].attrs
        assert prediction["alpha"] == pytest.approx(0.1)
        assert prediction["l2a_alg_count"] == 7
        assert len(handle["ANCILLARY/model_data"]) == 35
        model = handle["ANCILLARY/model_data"][()]
        assert set(handle["BEAM0000/predict_stratum"][()]) <= set(model["predict_stratum"])


def test_without_full_layout_every_field_combine_needs_is_present(tmp_path: Path) -> None:
    path = write_granule(tmp_path, ACQUIRED, shots_per_beam=10, full_layout=False)
    with h5py.File(path, "r") as handle:
        assert sorted(handle) == [*BEAM_NAMES, "METADATA"]
        for beam in BEAM_NAMES:
            for field in (*REQUIRED_FIELDS, *REFERENCE_FIELDS):
                assert handle[beam][field].shape == (10,)
            assert handle[beam]["shot_number"].dtype == np.uint64


# --- values ---------------------------------------------------------------------------


def test_shot_numbers_follow_the_real_encoding(tmp_path: Path) -> None:
    path = write_granule(tmp_path, ACQUIRED, orbit=6515, shots_per_beam=50, full_layout=False)
    seen: list[np.ndarray] = []
    with h5py.File(path, "r") as handle:
        for beam in BEAM_NAMES:
            beam_id = int(beam[4:], 2)
            shots = handle[beam]["shot_number"][()]
            expected = (
                6515 * 10**13 + beam_id * 10**11 + SUB_ORBIT_GRANULE * 10**8 + np.arange(1, 51)
            )
            np.testing.assert_array_equal(shots, expected.astype(np.uint64))
            assert (handle[beam]["beam"][()] == beam_id).all()
            seen.append(shots)
    assert int(seen[1][0]) == 65150100100000001  # orbit 6515, BEAM0001, granule 01, shot 1
    everything = np.concatenate(seen)
    assert len(np.unique(everything)) == len(everything)


def test_real_shot_numbers_use_the_same_encoding(real_granule: Path) -> None:
    """Guards the encoding the generator copies: orbit, beam and sub-orbit granule."""
    with h5py.File(real_granule, "r") as handle:
        for beam in BEAM_NAMES:
            shots = handle[beam]["shot_number"][()]
            assert (shots // 10**13 == 6515).all()
            assert ((shots // 10**11) % 100 == int(beam[4:], 2)).all()
            assert ((shots // 10**8) % 1000 == 2).all()  # the `_02_` of the file name
            assert (handle[beam]["beam"][()] == int(beam[4:], 2)).all()


def test_delta_time_agrees_with_the_file_name(tmp_path: Path) -> None:
    path = write_granule(tmp_path, ACQUIRED, shots_per_beam=200, full_layout=False)
    named = parse_granule_name(path.name).acquisition_time.replace(tzinfo=UTC)
    with h5py.File(path, "r") as handle:
        for beam in BEAM_NAMES:
            delta_time = handle[beam]["delta_time"][()]
            first = delta_time_to_datetime(delta_time[0])
            last = delta_time_to_datetime(delta_time[-1])
            assert named <= first < named + timedelta(seconds=60)
            assert last - named < timedelta(minutes=3)
            np.testing.assert_allclose(np.diff(delta_time), SHOT_INTERVAL, rtol=1e-6)
            master = handle[beam]["master_int"][()] + handle[beam]["master_frac"][()]
            np.testing.assert_allclose(master, delta_time, rtol=0, atol=1e-6)


def test_beams_argument_pins_values_verbatim(tmp_path: Path) -> None:
    pinned = {
        "agbd": np.array([10.0, 250.5, FILL_VALUE, 3.0]),
        "agbd_se": np.array([1.0, 20.25, FILL_VALUE, 2.5], dtype=np.float32),
        "l2_quality_flag": np.array([1, 1, 0, 1]),
        "l4_quality_flag": np.array([1, 0, 0, 1], dtype=np.uint8),
        "surface_flag": [1, 1, 1, 0],
    }
    path = write_granule(
        tmp_path, ACQUIRED, beams={"BEAM0101": pinned, "BEAM1000": {"agbd_se": None}}
    )
    with h5py.File(path, "r") as handle:
        assert [name for name in handle if name.startswith("BEAM")] == ["BEAM0101", "BEAM1000"]
        beam = handle["BEAM0101"]
        for name, values in pinned.items():
            expected = np.asarray(values).astype(beam[name].dtype)
            np.testing.assert_array_equal(beam[name][()], expected)
        assert beam["agbd"].dtype == np.float32  # the real dtype, not the given float64
        assert beam["l2_quality_flag"].dtype == np.uint8
        assert beam["lat_lowestmode"].shape == beam["shot_number"].shape == (4,)
        np.testing.assert_array_equal(beam["agbd_prediction/agbd_a1"][()], beam["agbd"][()])
        # A field given as None is left out (a granule lacking a required field).
        assert "agbd_se" not in handle["BEAM1000"]
        assert handle["BEAM1000"]["agbd"].shape == (100,)


def test_beams_argument_rejects_unequal_lengths_and_unknown_beams(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        write_granule(tmp_path, ACQUIRED, beams={"BEAM0000": {"agbd": [1.0], "agbd_se": []}})
    with pytest.raises(ValueError, match="not a GEDI beam"):
        write_granule(tmp_path, ACQUIRED, beams={"BEAM0100": {}})


def test_same_seed_gives_identical_arrays_and_other_seed_different(tmp_path: Path) -> None:
    kwargs = {"shots_per_beam": 40, "full_layout": False}
    first = write_granule(tmp_path / "a", ACQUIRED, seed=7, **kwargs)
    again = write_granule(tmp_path / "b", ACQUIRED, seed=7, **kwargs)
    other = write_granule(tmp_path / "c", ACQUIRED, seed=8, **kwargs)
    with h5py.File(first) as f1, h5py.File(again) as f2, h5py.File(other) as f3:
        for beam in BEAM_NAMES:
            one, two, three = _read_beam(f1, beam), _read_beam(f2, beam), _read_beam(f3, beam)
            assert one.keys() == two.keys()
            for name in one:
                np.testing.assert_array_equal(one[name], two[name], err_msg=name)
            assert not np.array_equal(one["agbd"], three["agbd"])
            assert not np.array_equal(one["l4_quality_flag"], three["l4_quality_flag"])


def test_written_arrays_equal_shot_fields_across_several_chunks(tmp_path: Path) -> None:
    """Direct chunk writes round-trip: a 30,000-shot beam spans three 14,200 chunks."""
    n = 30_000
    path = write_granule(
        tmp_path, ACQUIRED, orbit=42, seed=3, shots_per_beam=n, beams={"BEAM0110": {}},
        full_layout=False,
    )  # fmt: skip
    rng = np.random.default_rng([3, BEAM_NAMES.index("BEAM0110")])
    expected = shot_fields(n, rng, orbit=42, beam="BEAM0110", acquisition_time=ACQUIRED)
    with h5py.File(path, "r") as handle:
        written = _read_beam(handle, "BEAM0110")
    assert written.keys() == expected.keys()
    for name, values in expected.items():
        assert written[name].dtype == values.dtype, name
        np.testing.assert_array_equal(written[name], values, err_msg=name)


def test_values_respect_bbox_and_fractions(tmp_path: Path) -> None:
    bbox = (10.0, 40.0, 12.0, 42.0)
    n = 1000
    path = write_granule(
        tmp_path, ACQUIRED, shots_per_beam=n, bbox=bbox, pass_fraction=0.7,
        fill_fraction=0.1, full_layout=False,
    )  # fmt: skip
    west, south, east, north = bbox
    with h5py.File(path, "r") as handle:
        for beam in BEAM_NAMES:
            shot = _read_beam(handle, beam)
            lat, lon = shot["lat_lowestmode"], shot["lon_lowestmode"]
            assert ((lat >= south) & (lat <= north) & (lon >= west) & (lon <= east)).all()
            assert np.ptp(lat) > 0.1  # a track across the box, not a point
            fill = shot["agbd"] == FILL_VALUE
            assert fill.sum() == 100
            assert (shot["agbd_se"][fill] == FILL_VALUE).all()
            assert (shot["l2_quality_flag"][fill] == 0).all()
            assert (shot["l4_quality_flag"][fill] == 0).all()
            assert (shot["algorithm_run_flag"][fill] == 0).all()
            passing = (shot["l2_quality_flag"] == 1) & (shot["l4_quality_flag"] == 1)
            assert passing.sum() == 700
            assert (shot["agbd"][passing] > 0).all() and (shot["agbd_se"][passing] > 0).all()
            assert (shot["surface_flag"][passing] == 1).all()
            assert (shot["degrade_flag"][passing] == 0).all()
            assert shot["surface_flag"].mean() > 0.9
            assert (shot["degrade_flag"] == 0).mean() > 0.9
            sensitivity = shot["sensitivity"]
            assert ((sensitivity >= 0.9) & (sensitivity <= 1.0)).all()
            assert len(set(shot["channel"])) == 1


def test_shot_fields_covers_required_fields_with_real_dtypes() -> None:
    rng = np.random.default_rng(0)
    fields = shot_fields(25, rng, orbit=3, beam="BEAM1011", acquisition_time=ACQUIRED)
    assert set(REQUIRED_FIELDS) | set(REFERENCE_FIELDS) <= fields.keys()
    assert all(len(values) == 25 for values in fields.values())
    assert fields["shot_number"].dtype == np.uint64
    assert fields["agbd"].dtype == fields["agbd_se"].dtype == np.float32
    assert fields["lat_lowestmode"].dtype == fields["delta_time"].dtype == np.float64
    assert fields["l2_quality_flag"].dtype == np.uint8
    assert fields["xvar"].shape == (25, 4)
    assert (fields["beam"] == 11).all()
    empty = shot_fields(0, rng, orbit=3, beam="BEAM1011", acquisition_time=ACQUIRED)
    assert all(len(values) == 0 for values in empty.values())


def test_write_granules_spreads_over_the_year(tmp_path: Path) -> None:
    paths = write_granules(
        tmp_path, 4, year=2021, shots_per_beam=5, seed=1, start_doy=100, full_layout=False
    )
    names = [parse_granule_name(path.name) for path in paths]
    times = [name.acquisition_time for name in names]
    orbits = [name.orbit for name in names]
    assert all(time.year == 2021 and time.timetuple().tm_yday >= 100 for time in times)
    assert times == sorted(times) and len(set(times)) == 4
    assert orbits == sorted(orbits) and len(set(orbits)) == 4
    assert times[-1] - times[0] > timedelta(days=100)
    shots = []
    for path in paths:
        with h5py.File(path, "r") as handle:
            shots.extend(handle[beam]["shot_number"][()] for beam in BEAM_NAMES)
    everything = np.concatenate(shots)
    assert len(np.unique(everything)) == len(everything) == 4 * 8 * 5


# --- broken inputs ----------------------------------------------------------------------


def test_truncate_file_makes_the_granule_unreadable(tmp_path: Path) -> None:
    path = write_granule(tmp_path, ACQUIRED, shots_per_beam=10, full_layout=False)
    size = path.stat().st_size
    assert truncate_file(path, 0.5) == path
    assert path.stat().st_size == size // 2
    with pytest.raises(OSError), h5py.File(path, "r"):
        pass


def test_non_l4a_granule_has_an_l4a_name_but_no_agbd(tmp_path: Path) -> None:
    path = write_non_l4a_granule(tmp_path, ACQUIRED)
    assert parse_granule_name(path.name).orbit == 1
    with h5py.File(path, "r") as handle:
        assert handle.attrs["short_name"] == "GEDI_L2A"
        assert handle["METADATA/DatasetIdentification"].attrs["shortName"] == "GEDI_L2A"
        for beam in BEAM_NAMES:
            assert "lat_lowestmode" in handle[beam]
            assert "agbd" not in handle[beam]
            assert "agbd_se" not in handle[beam]
