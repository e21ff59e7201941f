"""task=calibrate: recovery of known parameters, bit-identical resume, refusals, calibration network, groups."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from lpm_graph.cli import metric_of
from lpm_graph.errors import CalibrationWarning, ConfigError
from lpm_graph.observation import resolve_data_path
from lpm_graph.tasks.calibrate import calibrate
from tests.conftest import compose_config

TRUTH = {"transmission.beta_community": 0.6, "transmission.beta_school": 0.5, "observation.reporting_fraction": 0.4}
N, STEPS = 1500, 50


def as_overrides(values):
    return [f"model.params.{k}={v}" for k, v in values.items()]


def base_overrides(obs_path, extra=()):
    return ["task=calibrate", f"population.num_people={N}", "population.seed=3", f"steps={STEPS}", "progress=false",
            "model.params.seir.initial_infected=2",  # every stochastic replicate starts with an infection
            f"observations.path={obs_path}", "task.plot=false", f"model.learnable=[{','.join(TRUTH)}]", *extra]


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """Noise-free reported cases by age group (delay 3, as conf/observations/synthetic.yaml) from the
    expected-mode model at TRUTH."""
    path = tmp_path_factory.mktemp("obs") / "cases.csv"
    cfg = compose_config(base_overrides(path, as_overrides(TRUTH)))
    model = instantiate(cfg.model, _convert_="all")
    data = instantiate(cfg.population, _convert_="all")
    with torch.no_grad():
        traj = model(data, steps=STEPS)
    table = {"step": list(range(1, STEPS + 1))}
    for label in traj.labels["age"]:
        x = traj.group("new_infections", "age", label)[:, 0].double()
        shifted = torch.cat([torch.zeros(3, dtype=x.dtype), x])[1:STEPS + 1]
        table[f"cases_{label}"] = (TRUTH["observation.reporting_fraction"] * shifted).tolist()
    pd.DataFrame(table).to_csv(path, index=False)
    return path


def test_recovers_known_parameters(observed, tmp_path):
    cfg = compose_config(base_overrides(observed, ["task.iterations=120", "task.optimizer.lr=0.1",
                                                   "task.checkpoint_every=0", "metric=simulations"]))
    metrics = calibrate(cfg, tmp_path)
    start = {k: cfg.model.params[k.split(".")[0]][k.split(".")[1]] for k in TRUTH}
    for name, true in TRUTH.items():
        assert abs(start[name] - true) > 0.05, name  # the run starts away from the truth
        # stated tolerance: 5% of the true value after 120 Adam steps on noise-free data
        assert metrics["fitted"][name] == pytest.approx(true, rel=0.05), (name, metrics["fitted"][name])
    history = pd.read_csv(tmp_path / "loss.csv")["loss"]
    assert len(history) == 120 and history.iloc[-1] < 1e-2 * history.iloc[0]
    saved = json.loads((tmp_path / "fitted_params.json").read_text())
    name = "transmission.beta_community"
    assert saved["fitted"][name] == pytest.approx(metrics["fitted"][name])
    assert set(saved["learnable"]) == set(TRUTH)
    assert metrics["simulations"] == 121 and (tmp_path / "checkpoint.pt").exists()
    assert not (tmp_path / "loss.png").exists()  # task.plot=false
    # the CLI returns the configured metric, by default the final loss
    assert metric_of("calibrate", metrics, cfg.metric) == ("simulations", 121.0)
    assert metric_of("calibrate", metrics, None) == ("final_loss", metrics["final_loss"])
    assert metrics["final_loss"] < 1e-2 * history.iloc[0]


def stochastic(obs, extra=()):
    return compose_config(base_overrides(obs, ["model.mode=stochastic", "task.replicates=2", "task.checkpoint_every=3",
                                               "task.optimizer.lr=0.05",
                                               # a start within the data's scale (no CalibrationWarning)
                                               "model.params.transmission.beta_community=0.5", *extra]))


def test_resume_is_bit_identical_to_an_uninterrupted_run(observed, tmp_path):
    full = calibrate(stochastic(observed, ["task.iterations=6"]), tmp_path / "full")
    calibrate(stochastic(observed, ["task.iterations=3"]), tmp_path / "first")
    first = tmp_path / "first" / "checkpoint.pt"
    resumed = calibrate(stochastic(observed, ["task.iterations=6", f"task.resume={first}"]), tmp_path / "second")
    assert resumed["fitted"] == full["fitted"]
    # loss.csv of the resumed run, parameter trace of the first three iterations included, is the same file
    a = (tmp_path / "full" / "loss.csv").read_text()
    assert (tmp_path / "second" / "loss.csv").read_text() == a
    table = pd.read_csv(tmp_path / "full" / "loss.csv")
    assert list(table.columns) == ["iteration", "loss", "transmission.beta_school", "transmission.beta_community",
                                   "observation.reporting_fraction"]  # in model.params order
    assert len(table) == 6 and table.iteration.tolist() == list(range(1, 7))
    # the last row holds the fitted values
    assert {k: table[k].iloc[-1] for k in TRUTH} == pytest.approx({k: full["fitted"][k] for k in TRUTH}, rel=1e-6)


def test_resume_refuses_another_config_or_other_data(observed, tmp_path):
    calibrate(stochastic(observed, ["task.iterations=3"]), tmp_path / "first")
    ckpt = tmp_path / "first" / "checkpoint.pt"
    with pytest.raises(ConfigError, match="different config"):
        calibrate(stochastic(observed, ["task.iterations=6", f"task.resume={ckpt}",
                                        "model.params.transmission.beta_household=0.9"]), tmp_path / "x")
    # same config, same path, one byte of the data changed in place
    copy = tmp_path / "copy.csv"
    copy.write_text(observed.read_text())
    calibrate(stochastic(copy, ["task.iterations=3"]), tmp_path / "second")
    copy.write_text(observed.read_text() + "\n")
    with pytest.raises(ConfigError, match="different observation data"):
        calibrate(stochastic(copy, ["task.iterations=6", f"task.resume={tmp_path / 'second' / 'checkpoint.pt'}"]),
                  tmp_path / "y")
    with pytest.raises(ConfigError, match="does not exist"):
        calibrate(stochastic(observed, [f"task.resume={tmp_path / 'none.pt'}"]), tmp_path / "z")


def test_calibration_network_trains_time_varying_parameters(observed, tmp_path):
    features = tmp_path / "features.csv"
    pd.DataFrame({"week": range(8), "mobility": [1, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6],
                  "temperature": [5, 6, 8, 9, 11, 12, 14, 15]}).to_csv(features, index=False)
    cfg = compose_config(base_overrides(observed, [
        "task.iterations=15", "task.checkpoint_every=0", "task.optimizer.lr=0.05",
        "model.learnable=[observation.reporting_fraction]",
        "model.params.transmission.beta_community=[0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3]",
        "+model.time_varying.transmission.beta_community=7",
        f"task.calibration_net={{features: {features}, targets: {{transmission.beta_community: [0.0, 2.0]}}, "
        "hidden: 8}"]))
    metrics = calibrate(cfg, tmp_path / "net")
    table = pd.read_csv(tmp_path / "net" / "loss.csv")
    history = table["loss"]
    assert history.iloc[-1] < 0.5 * history.iloc[0]
    series = metrics["fitted"]["transmission.beta_community"]
    assert len(series) == 8 and all(0 < v < 2 for v in series) and len(set(series)) > 1
    # loss.csv traces the network's output series too, one column per element
    weekly = [f"transmission.beta_community[{k}]" for k in range(8)]
    assert list(table.columns) == ["iteration", "loss", "observation.reporting_fraction", *weekly] and len(table) == 15
    assert table[weekly].iloc[-1].tolist() == pytest.approx(series, rel=1e-6)


def test_a_calibration_network_run_is_reproducible(observed, tmp_path):
    # its weights were drawn from torch's global generator: the same seed and config gave other losses
    features = tmp_path / "features.csv"
    pd.DataFrame({"mobility": [1, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6]}).to_csv(features, index=False)
    over = ["task.iterations=3", "task.checkpoint_every=0", "model.learnable=[observation.reporting_fraction]",
            "model.params.transmission.beta_community=[0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3]",
            "+model.time_varying.transmission.beta_community=7",
            f"task.calibration_net={{features: {features}, targets: {{transmission.beta_community: [0.0, 2.0]}}}}"]
    runs = []
    for k in range(2):
        torch.manual_seed(100 + k)  # whatever the global state
        calibrate(compose_config(base_overrides(observed, over)), tmp_path / f"run{k}")
        runs.append((tmp_path / f"run{k}" / "loss.csv").read_text())
    assert runs[0] == runs[1]
    calibrate(compose_config(base_overrides(observed, [*over, "seed=9"])), tmp_path / "other")
    assert (tmp_path / "other" / "loss.csv").read_text() != runs[0]


def test_a_network_target_must_be_time_varying(observed, tmp_path):
    features = tmp_path / "features.csv"
    pd.DataFrame({"mobility": [1.0, 0.5]}).to_csv(features, index=False)
    cfg = compose_config(base_overrides(observed, [
        f"task.calibration_net={{features: {features}, targets: {{transmission.beta_community: [0.0, 2.0]}}}}"]))
    with pytest.raises(ConfigError, match="'transmission.beta_community' must be time-varying"):
        calibrate(cfg, tmp_path / "out")


def test_nothing_to_fit_and_missing_observations_are_refused(observed, tmp_path):
    with pytest.raises(ConfigError, match="nothing to fit"):
        calibrate(compose_config(base_overrides(observed, ["model.learnable=[]"])), tmp_path)
    with pytest.raises(ConfigError, match="observations reach step 50 but steps=20"):
        calibrate(compose_config(base_overrides(observed, ["steps=20"])), tmp_path)
    with pytest.raises(ConfigError, match="task=calibrate needs observations"):
        calibrate(compose_config([o for o in base_overrides(observed) if not o.startswith("observations.")]
                                 + ["~observations"]), tmp_path)
    with pytest.raises(ConfigError, match="source = 'cases' is not observed by the model"):
        calibrate(compose_config(base_overrides(observed, ["observations.series.cases_0-10.source=cases"])), tmp_path)


def test_a_file_of_one_unnamed_column_is_fitted_to_the_main_observable(observed, tmp_path):
    # README: `observations.path=my_cases.csv` with a step column and one column of cases, no series named
    table = pd.read_csv(observed)
    mine = tmp_path / "my_cases.csv"
    pd.DataFrame({"step": table["step"], "cases": table.drop(columns="step").sum(axis=1)}).to_csv(mine, index=False)
    cfg = compose_config(base_overrides(mine, ["task.iterations=2", "task.checkpoint_every=0", "task.plot=true"]))
    with pytest.warns(CalibrationWarning, match=r"column 'cases' .* compared with 'new_infections', the model's main "
                                                r"observable \(reporting observation.reporting_fraction, delay 3\)"):
        metrics = calibrate(cfg, tmp_path / "out")
    # the shipped series' shared reporting fraction and delay applied to the total: at the truth the fit is exact
    at_truth = compose_config(base_overrides(mine, ["task.iterations=1", "task.checkpoint_every=0",
                                                    "task.optimizer.lr=0", *as_overrides(TRUTH)]))
    with pytest.warns(CalibrationWarning, match="main observable"):
        exact = calibrate(at_truth, tmp_path / "truth")
    assert exact["final_loss"] < 1e-10 < metrics["final_loss"]


def test_observations_of_another_scale_are_warned_of_before_iterating(observed, tmp_path):
    # the same cases from a population 50 times larger than the simulated one (1,500 people)
    table = pd.read_csv(observed)
    scaled = tmp_path / "large.csv"
    table.assign(**{c: table[c] * 50 for c in table.columns if c != "step"}).to_csv(scaled, index=False)
    cfg = compose_config(base_overrides(scaled, ["task.iterations=2", "task.checkpoint_every=0"]))
    with pytest.warns(CalibrationWarning, match=r"differ in scale by more than 10x at the starting parameters: .* "
                                                r"\(1/\d+.\d+ of the data\), on a population of 1,500 person nodes"):
        calibrate(cfg, tmp_path / "out")
    # the unscaled data and the same start: no warning (warnings are errors in this suite)
    calibrate(compose_config(base_overrides(observed, ["task.iterations=2", "task.checkpoint_every=0"])),
              tmp_path / "same")


def test_fit_panels_name_what_their_y_axis_counts(observed, tmp_path):
    import matplotlib.pyplot as plt

    from lpm_graph.observation import ObservationModel, load_observations
    from lpm_graph.tasks.calibrate import fit_figure

    cfg = compose_config(base_overrides(observed))
    model = instantiate(cfg.model, _convert_="all")
    series = {k: dict(v) for k, v in cfg.observations.series.items()}
    obs = load_observations(observed, series)
    pred = {k: torch.ones(len(obs.steps)) for k in series}
    fig = fit_figure(obs, pred, ObservationModel(series), model)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_visible() and ax.axison]
    plt.close(fig)
    assert len(labels) == 9
    assert labels[0] == "new_infections (age 0-10), people per day\nx observation.reporting_fraction\n3 steps later"


def test_the_calibration_network_experiment_runs_as_the_readme_shows(tmp_path):
    # README: `lpm-graph +experiment=calibration_net` (weekly features -> weekly community intensity)
    cfg = compose_config(["+experiment=calibration_net", "population.num_people=1500", "population.seed=3",
                          "steps=21", "progress=false", "task.iterations=2", "task.checkpoint_every=0",
                          "task.plot=false", "model.params.seir.initial_infected=2"])
    assert cfg.task.name == "calibrate"
    shipped = pd.read_csv(resolve_data_path(cfg.observations.path))
    cfg.observations.path = str(tmp_path / "obs.csv")  # the shipped cases, cut to 21 days
    shipped[shipped.step <= 21].to_csv(cfg.observations.path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # 1,500 people against data of 100,000: warned, as it should
        metrics = calibrate(cfg, tmp_path / "out")
    weekly = metrics["fitted"]["transmission.beta_community"]
    rows = len(pd.read_csv(resolve_data_path(cfg.task.calibration_net.features)))
    assert len(weekly) == rows == 15 and len(set(weekly)) > 1  # one value per feature row, from the network
    assert metrics["learnable"][-1] == "transmission.beta_community"  # trained through the network's weights
