"""Observation files, the observation model and the losses."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from lpm_graph.core import Observable, Trajectory
from lpm_graph.errors import ConfigError
from lpm_graph.observation import ObservationModel, load_observations, observation_loss, series_for_file

SERIES = {"cases": {"source": "new_infections", "reporting": "observation.rho", "delay": 2}}


def write(tmp_path, frame, name="obs.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_parquet(path, index=False)
    return path


def trajectory(new_infections):
    """Two replicates (x and 3x: mean 2x); by age, group 0-50 holds x and 50+ holds 2x in each replicate."""
    x = torch.tensor(new_infections, dtype=torch.float64)
    series = {"new_infections": torch.stack([x, 3 * x], 1)}
    grouped = {"age": {"new_infections": torch.stack([x, 2 * x], 1).unsqueeze(-1).expand(-1, -1, 2)}}
    observables = {"new_infections": Observable("new_infections", "person.new_infections", "sum", by=("age",))}
    return Trajectory(series=series, grouped=grouped, labels={"age": ["0-50", "50+"]}, observables=observables,
                      num_nodes={"person": 100})


@pytest.mark.parametrize("name", ["obs.csv", "obs.parquet"])
def test_load_and_predict_with_reporting_and_delay(tmp_path, name):
    path = write(tmp_path, pd.DataFrame({"step": [1, 2, 3, 5], "cases": [0, None, 4, 7]}), name)
    obs = load_observations(path, SERIES)
    assert obs.steps.tolist() == [1, 2, 3, 5] and math.isnan(obs.values["cases"][1])
    traj = trajectory([1, 2, 3, 4, 5, 6])
    pred = ObservationModel(SERIES).predict(traj, obs, {"observation.rho": torch.tensor(0.5)})["cases"]
    # mean over replicates is 2x; step s reads index s-2 (index 0: the seeded infections);
    # before the delay: 0
    assert pred.tolist() == [0.0, 0.5 * 2 * 1, 0.5 * 2 * 2, 0.5 * 2 * 4]


def test_a_series_may_be_one_group_of_a_grouped_observable(tmp_path):
    path = write(tmp_path, pd.DataFrame({"step": [1, 2], "old": [1, 2], "young": [1, 2]}))
    spec = {"old": {"source": "new_infections", "by": "age", "group": "50+", "reporting": 0.5},
            "young": {"source": "new_infections", "by": "age", "group": "0-50"}}
    obs = load_observations(path, spec)
    pred = ObservationModel(spec).predict(trajectory([5, 6, 7]), obs, {})
    # the group's series (2x in 50+, x in 0-50), averaged over replicates, at steps 1 and 2
    assert pred["old"].tolist() == [0.5 * 12.0, 0.5 * 14.0] and pred["young"].tolist() == [6.0, 7.0]
    with pytest.raises(ConfigError, match="'30-40' is not a group of 'age'; groups: \\['0-50', '50\\+'\\]"):
        ObservationModel({"old": {"source": "new_infections", "by": "age", "group": "30-40"}}).predict(
            trajectory([5, 6, 7]), obs, {})
    with pytest.raises(ConfigError, match="give both by .* and group"):
        ObservationModel({"old": {"source": "new_infections", "by": "age"}})


def test_the_observation_model_is_checked_against_the_model():
    from lpm_graph.models.epidemic import SEIR
    from tests.models.epidemic.conftest import seir_model

    model = seir_model(SEIR(fatality=True), params={"observation": {"rho": 0.5}})
    ObservationModel({"cases": {"source": "new_infections", "by": "age", "group": "0-10",
                                "reporting": "observation.rho"},
                      "deaths": {"source": "D"}}).check(model)
    with pytest.raises(ConfigError, match="source = 'cases' is not observed by the model"):
        ObservationModel({"x": {"source": "cases"}}).check(model)
    with pytest.raises(ConfigError, match="'S' is not observed by 'age'; it is grouped by nothing"):
        ObservationModel({"x": {"source": "S", "by": "age", "group": "0-10"}}).check(model)
    with pytest.raises(ConfigError, match="reporting names parameter 'observation.nowhere', which is not in"):
        ObservationModel({"x": {"source": "new_infections", "reporting": "observation.nowhere"}}).check(model)


@pytest.mark.parametrize("kind", ["mse", "poisson", "negbin"])
def test_loss_is_minimal_at_the_truth_and_masks_missing(tmp_path, kind):
    path = write(tmp_path, pd.DataFrame({"step": [1, 2, 3], "cases": [3.0, None, 5.0]}))
    obs = load_observations(path, SERIES)
    truth = {"cases": torch.tensor([3.0, 1e6, 5.0], dtype=torch.float64)}  # the masked entry is ignored
    at_truth = observation_loss(truth, obs, kind)
    assert torch.isfinite(at_truth)
    for factor in (0.8, 1.25):
        off = {"cases": truth["cases"] * factor}
        assert observation_loss(off, obs, kind) > at_truth
    if kind in ("mse", "poisson"):
        assert float(at_truth) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("frame, match", [
    (pd.DataFrame({"day": [1], "cases": [1]}), "has no column 'step'"),
    (pd.DataFrame({"step": [1], "deaths": [1]}), "has no column 'cases'"),
    (pd.DataFrame({"step": [0, 1], "cases": [1, 1]}), "row 2 has step 0"),
    (pd.DataFrame({"step": [1, 1], "cases": [1, 1]}), "duplicate steps"),
    (pd.DataFrame({"step": [1, 2], "cases": [1, -3]}), "negative values"),
    (pd.DataFrame({"step": [1, 2], "cases": ["1", "many"]}), "row 3 holds 'many'"),
    (pd.DataFrame({"step": [1.5, 2.0], "cases": [1, 2]}), "must hold integer steps"),
])
def test_bad_observation_files_name_the_file_and_column(tmp_path, frame, match):
    path = write(tmp_path, frame)
    with pytest.raises(ConfigError, match=match) as info:
        load_observations(path, SERIES)
    assert "obs.csv" in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_observations(tmp_path / "nope.csv", SERIES)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ConfigError, match="could not read"):
        load_observations(tmp_path / "empty.csv", SERIES)


def test_dates_map_to_steps(tmp_path):
    path = write(tmp_path, pd.DataFrame({"date": ["2020-03-02", "2020-03-05"], "cases": [1, 2]}))
    obs = load_observations(path, SERIES, time_column="date", start_date="2020-03-01")
    assert obs.steps.tolist() == [1, 4]


@pytest.mark.parametrize("spec, match", [
    ({"cases": {"reporting": 0.5}}, "source is missing"),
    ({"cases": {"source": "new_infections", "reporting": 1.5}}, "reporting must be in \\[0, 1\\]"),
    ({"cases": {"source": "new_infections", "delay": -1}}, "delay must be an integer >= 0"),
    ({"cases": {"source": "new_infections", "delay": 1.5}}, "delay must be an integer >= 0"),
    ({"cases": {"source": "new_infections", "lag": 1}}, "unknown keys \\['lag'\\]"),
])
def test_bad_observation_model_settings(spec, match):
    with pytest.raises(ConfigError, match=match):
        ObservationModel(spec)


def _series():
    return {f"cases_{g}": {"source": "new_infections", "by": "age", "group": g, "reporting": "observation.rho",
                           "delay": 3} for g in ("0-10", "10-20")}


def test_one_unnamed_column_is_compared_with_the_main_observable(tmp_path):
    path = tmp_path / "my_cases.csv"
    pd.DataFrame({"step": [1, 2, 3], "cases": [1, 4, 9]}).to_csv(path, index=False)
    series, note = series_for_file(path, _series(), "step", "new_infections")
    # the configured series share their reporting fraction and delay: the column keeps them
    assert series == {"cases": {"source": "new_infections", "reporting": "observation.rho", "delay": 3}}
    assert "column 'cases'" in note and "'new_infections', the model's main observable" in note
    assert "'~observations.series'" in note  # says how to choose otherwise
    # series that disagree on reporting and delay: reported in full, unshifted
    mixed = {**_series(), "deaths": {"source": "new_deaths", "reporting": 1.0}}
    series, _ = series_for_file(path, mixed, "step", "new_infections")
    assert series == {"cases": {"source": "new_infections", "reporting": 1.0, "delay": 0}}
    # a Parquet file is read by its schema alone
    pq = tmp_path / "my_cases.parquet"
    pd.DataFrame({"day": [1, 2], "reported": [3.0, 4.0]}).to_parquet(pq)
    series, note = series_for_file(pq, _series(), "day", "opinion_var")
    assert series == {"reported": {"source": "opinion_var", "reporting": "observation.rho", "delay": 3}} and note


@pytest.mark.parametrize("columns", [["step", "cases_0-10", "cases_10-20"], ["step", "cases_0-10"],
                                     ["step", "a", "b"], ["step"]])
def test_named_or_several_columns_keep_the_configured_series(tmp_path, columns):
    path = tmp_path / "obs.csv"
    pd.DataFrame({c: [1, 2] for c in columns}).to_csv(path, index=False)
    assert series_for_file(path, _series(), "step", "new_infections") == (_series(), None)


@pytest.mark.parametrize("kind", ["poisson", "negbin", "mse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_observations_give_finite_gradients(tmp_path, kind, dtype):
    # a day of zero cases made the float32 Poisson deviance's gradient NaN, and one optimiser step turned every
    # parameter into NaN (task=calibrate task.loss=poisson on the shipped observations)
    path = tmp_path / "obs.csv"
    pd.DataFrame({"step": [1, 2, 3, 4], "cases": [0.0, 2.0, 0.0, 5.0]}).to_csv(path, index=False)
    obs = load_observations(path, {"cases": {}})
    mu = torch.tensor([0.3, 1.5, 2.0, 4.0], dtype=dtype, requires_grad=True)
    loss = observation_loss({"cases": mu}, obs, kind)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(mu.grad).all(), mu.grad
    if kind == "poisson":  # d/dmu of the mean deviance (mu - y + y log(y/mu)) / K is (1 - y/mu) / K
        y = torch.tensor([0.0, 2.0, 0.0, 5.0], dtype=dtype)
        assert torch.allclose(mu.grad, (1 - y / mu.detach()) / 4)
