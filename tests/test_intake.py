"""xlevda.observations: observation Datasets from tables, CSV files and station series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xlevda
from xlevda.errors import ObservationError


def drifters(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "when": pd.date_range("2026-01-01", periods=n, freq="1h").strftime("%Y-%m-%d %H:%M"),
            "latitude": np.linspace(41.0, 43.0, n),
            "longitude": np.linspace(-159.0, -156.0, n),
            "eta": np.arange(n) / 10.0,
            "eta_std": np.full(n, 0.05),
            "drifter": [f"D{i % 2}" for i in range(n)],
        }
    )


def from_drifters(table, **kw):
    kw = {"time": "when", "coords": {"lat": "latitude", "lon": "longitude"}, **kw}
    return xlevda.observations(table, **kw)


def test_table_columns_become_the_observation_dataset():
    table = drifters()
    obs = from_drifters(table, variables=["eta"])
    assert dict(obs.sizes) == {"obs": 4}
    np.testing.assert_array_equal(obs.time.values, pd.to_datetime(table.when).to_numpy())
    np.testing.assert_array_equal(obs.lat.values, table.latitude.to_numpy())
    np.testing.assert_array_equal(obs.lon.values, table.longitude.to_numpy())
    np.testing.assert_array_equal(obs.eta.values, table.eta.to_numpy())
    np.testing.assert_array_equal(obs.eta_std.values, table.eta_std.to_numpy())
    assert list(obs.data_vars) == ["eta", "eta_std"]  # the identifier is no data variable
    assert obs.drifter.dims == ("obs",) and obs.drifter.values.tolist() == list(table.drifter)
    assert obs.attrs["not_observed"] == "drifter"


def test_errors_mapping_gives_a_scalar_std():
    obs = from_drifters(drifters().drop(columns="eta_std"), variables=["eta"], errors={"eta": 0.2})
    assert obs.eta_std.dims == () and float(obs.eta_std) == 0.2


def test_index_is_read_as_columns_and_no_cube_is_built():
    table = drifters().set_index(["when", "latitude", "longitude"])
    obs = from_drifters(table, variables=["eta"])
    assert dict(obs.sizes) == {"obs": 4}  # set_index would unstack to 4 x 4 x 4


def test_csv_path(tmp_path):
    path = tmp_path / "drifters.csv"
    drifters().to_csv(path, index=False)
    xr.testing.assert_identical(
        from_drifters(path, variables=["eta"]), from_drifters(drifters(), variables=["eta"])
    )


def test_time_zones_are_converted_to_naive_utc():
    table = drifters(2)
    table["when"] = ["2026-01-01T01:00+01:00", "2026-01-01T03:00+02:00"]  # mixed offsets
    obs = from_drifters(table, variables=["eta"])
    expected = np.array(["2026-01-01T00:00", "2026-01-01T01:00"], "datetime64[ns]")
    np.testing.assert_array_equal(obs.time.values, expected)


def test_time_zone_aware_datetimes_are_converted_to_naive_utc():
    table = drifters(2)
    table["when"] = pd.date_range("2026-07-01T02:00", periods=2, freq="1h", tz="Europe/Paris")
    obs = from_drifters(table, variables=["eta"])
    expected = np.array(["2026-07-01T00:00", "2026-07-01T01:00"], "datetime64[ns]")
    np.testing.assert_array_equal(obs.time.values, expected)


def test_naive_and_zoned_times_mixed_are_refused():
    table = drifters(2)
    table["when"] = ["2026-01-01T01:00", "2026-01-01T03:00+02:00"]
    with pytest.raises(ObservationError, match="time column 'when' must hold times"):
        from_drifters(table, variables=["eta"])


def test_numeric_times_are_kept():
    table = drifters(3).assign(when=[0.0, 0.5, 2.0])
    np.testing.assert_array_equal(from_drifters(table, variables=["eta"]).time, [0.0, 0.5, 2.0])


def test_nan_positions_are_refused_with_a_count_or_dropped():
    table = drifters(5)
    table.loc[1, "latitude"] = np.nan
    table.loc[3, "when"] = None
    with pytest.raises(ObservationError, match=r"2 of 5 observation\(s\) have no time or pos"):
        from_drifters(table, variables=["eta"])
    obs = from_drifters(table, variables=["eta"], drop_nan_positions=True)
    assert obs.attrs["n_dropped_nan_positions"] == 2
    np.testing.assert_array_equal(obs.eta.values, table.eta.to_numpy()[[0, 2, 4]])


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from(["ok", "nan_time", "nan_lat", "nan_lon"]), min_size=1, max_size=8))
def test_dropped_rows_are_exactly_those_without_time_or_position(rows):
    table = drifters(len(rows))
    for i, kind in enumerate(rows):
        column = {"nan_time": "when", "nan_lat": "latitude", "nan_lon": "longitude"}.get(kind)
        if column is not None:
            table.loc[i, column] = None if column == "when" else np.nan
    kept = [i for i, kind in enumerate(rows) if kind == "ok"]
    if not kept:
        with pytest.raises(ObservationError, match=r"none of the .* has a time and a position"):
            from_drifters(table, variables=["eta"], drop_nan_positions=True)
        return
    obs = from_drifters(table, variables=["eta"], drop_nan_positions=True)
    assert obs.attrs["n_dropped_nan_positions"] == len(rows) - len(kept)
    np.testing.assert_array_equal(obs.eta.values, table.eta.to_numpy()[kept])
    np.testing.assert_array_equal(obs.drifter.values, table.drifter.to_numpy()[kept])


@pytest.mark.parametrize(
    ("change", "kw", "message"),
    [
        ({}, {"coords": {"lat": "y", "lon": "longitude"}}, "position 'lat' column 'y' not in"),
        ({}, {"variables": ["sst"]}, "observed variable 'sst' not in the table"),
        ({}, {"variables": ["eta"], "errors": {"eta": 0.1}}, "holds 'eta_std'"),
        ({}, {"variables": ["eta"], "errors": {"u": 0.1}}, "errors names 'u'"),
        ({"when": "soon"}, {"variables": ["eta"]}, "time column 'when' must hold times.*'soon'"),
        ({"latitude": "north"}, {"variables": ["eta"]}, "position column 'latitude' must hold"),
        ({"eta": "high"}, {"variables": ["eta"]}, "column 'eta' must hold"),
        ({}, {"variables": ["eta"], "drop_nan_positions": "yes"}, "drop_nan_positions must"),
        ({"time": 0}, {"variables": ["eta"]}, "column 'time' would replace .* column 'when'"),
        ({"lat": 0}, {"variables": ["eta"]}, "column 'lat' would replace .* column 'latitude'"),
    ],
)
def test_bad_tables_are_named(change, kw, message):
    table = drifters(3)
    for column, value in change.items():
        table[column] = table.get(column, table.eta).astype(object)
        table.loc[1, column] = value
    with pytest.raises(ObservationError, match=message):
        from_drifters(table, **kw)


def station(lat: float, lon: float, n: int = 3, name: str | None = None) -> xr.Dataset:
    time = np.datetime64("2026-01-01T00", "ns") + np.arange(n) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {"eta": ("time", np.arange(n) + lat, {"units": "m"})},
        coords={"time": time, "lat": lat, "lon": lon},
    )
    return ds if name is None else ds.assign_coords(station=name)


def test_station_series_with_scalar_coordinates():
    obs = xlevda.observations(station(41.0, -158.0), errors={"eta": 0.1})
    assert dict(obs.sizes) == {"obs": 3}
    assert (obs.lat == 41.0).all() and (obs.lon == -158.0).all()
    np.testing.assert_array_equal(obs.time, station(41.0, -158.0).time)
    assert obs.eta.attrs["units"] == "m" and float(obs.eta_std) == 0.1


def test_list_of_stations_gains_a_station_coordinate():
    obs = xlevda.observations([station(41.0, -158.0), station(42.0, -157.0, n=2)])
    assert obs.station.values.tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(obs.lat, [41, 41, 41, 42, 42])
    assert obs.attrs["not_observed"] == "station"


def test_station_position_as_data_variables():
    ds = station(41.0, -158.0).reset_coords(["lat", "lon"])
    xr.testing.assert_identical(xlevda.observations(ds), xlevda.observations(station(41.0, -158.0)))


def test_concatenated_stations_padded_with_nan():
    stations = [station(41.0, -158.0, name="A"), station(42.0, -157.0, 2, "B")]
    both = xr.concat(stations, "station", join="outer", coords="different", compat="equals")
    obs = xlevda.observations(both)
    assert obs.sizes["obs"] == 6 and int(obs.eta.isnull().sum()) == 1  # B's padding
    np.testing.assert_array_equal(obs.station, ["A", "A", "A", "B", "B", "B"])
    np.testing.assert_array_equal(obs.lon, [-158, -158, -158, -157, -157, -157])


def test_station_position_on_time_is_refused_when_not_on_the_data():
    bad = station(41.0, -158.0).assign_coords(lat=("other", [41.0, 42.0]))
    with pytest.raises(ObservationError, match="station coordinate 'lat' has dims"):
        xlevda.observations(bad)


def test_assimilate_observations_from_a_dataframe(model, truth):
    """End to end: a DataFrame of the truth's values at points, through assimilate."""
    rng = np.random.default_rng(3)
    n = 40
    it, iy, ix = (rng.integers(0, truth.sizes[d], n) for d in ("time", "lat", "lon"))
    table = pd.DataFrame(
        {
            "time": pd.to_datetime(truth.time.values[it]).strftime("%Y-%m-%dT%H:%M:%S"),
            "latitude": truth.lat.values[iy],
            "longitude": truth.lon.values[ix],
            "eta": truth.eta.values[it, iy, ix],
            "buoy": [f"B{i}" for i in rng.integers(0, 5, n)],  # kept aside
        }
    )
    obs = xlevda.observations(
        table,
        coords={"lat": "latitude", "lon": "longitude"},
        variables=["eta"],
        errors={"eta": 0.05},
    )
    target = truth.drop_vars(["eta", "u"])
    analysis = target.levda.assimilate(
        obs, model, xlevda.LEVDA(window=3), run=xlevda.RunOptions(members=4, seed=0)
    )
    assert analysis.attrs["n_observations_used"] == n and obs.attrs["not_observed"] == "buoy"
    assert np.isfinite(analysis.eta.values).all()
