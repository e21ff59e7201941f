"""task=calibrate task.method=map|vi|nuts|sbi: the posterior against an exact one, one output schema, refusals,
bit-identical resume.

The problem: one parameter (the community contact intensity, Uniform over its bounds [0, 2]) of the
expected-mode epidemic on 200 people (20 infected at the start), 5 days of Poisson counts of new infections drawn at the truth.  Its exact
posterior is computed on a grid of the parameter (one simulation per point), and every tolerance below is stated
from the Monte Carlo error of the method's draws (NUTS: its own effective sample size).
"""
from __future__ import annotations

import importlib.util
import math

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from lpm_graph.config import METHODS, PRIORS
from lpm_graph.errors import ConfigError
from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.posterior import SUMMARY_COLUMNS
from tests.conftest import compose_config

NAME = "transmission.beta_community"
TRUTH, START, N, STEPS = 0.8, 0.3, 200, 5
LO, HI = 0.0, 2.0


def overrides(obs_path, extra=()):
    return ["task=calibrate", f"population.num_people={N}", "population.seed=3", f"steps={STEPS}", "progress=false",
            "model.mode=expected", "model.checkpoint=false", "dtype=float64", "model.params.seir.initial_infected=20",
            f"model.learnable=[{NAME}]", f"model.params.{NAME}={START}", "~observations.series",
            "+observations.series={cases: {source: new_infections}}", f"observations.path={obs_path}",
            "task.loss=poisson", "task.checkpoint_every=0", "task.plot=false", *extra]


def mean_counts(cfg, beta):
    """The expected-mode new infections of days 1..STEPS at ``beta`` (the likelihood's mean)."""
    model = instantiate(cfg.model, _convert_="all", dtype=torch.float64)
    data = instantiate(cfg.population, _convert_="all")
    graph = model.prepare(data, torch.float64)
    model = model.to(dtype=torch.float64)
    out = []
    with torch.no_grad():
        for b in beta:
            traj = model(graph, steps=STEPS, overrides={NAME: torch.tensor(float(b), dtype=torch.float64)})
            out.append(traj.series["new_infections"][1:, 0])
    return torch.stack(out)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """The observations (Poisson draws at the truth) and the exact posterior's mean, sd and 5%/95% quantiles."""
    root = tmp_path_factory.mktemp("posterior")
    path = root / "cases.csv"
    pd.DataFrame({"step": range(1, STEPS + 1), "cases": [0.0] * STEPS}).to_csv(path, index=False)
    cfg = compose_config(overrides(path))
    mu = mean_counts(cfg, [TRUTH])[0]
    y = torch.poisson(mu, generator=torch.Generator().manual_seed(0))
    pd.DataFrame({"step": range(1, STEPS + 1), "cases": y.tolist()}).to_csv(path, index=False)
    grid = torch.linspace(LO, HI, 161, dtype=torch.float64)[1:-1]  # midpoints of the bounds' open interval
    mus = mean_counts(cfg, grid.tolist()).clamp_min(1e-8)
    loglik = (y * mus.log() - mus - torch.lgamma(y + 1)).sum(1)
    w = torch.softmax(loglik, 0)  # Uniform prior: posterior on the grid
    mean = float((w * grid).sum())
    sd = math.sqrt(float((w * (grid - mean) ** 2).sum()))
    cdf = torch.cumsum(w, 0)
    q05, q95 = float(grid[torch.searchsorted(cdf, 0.05)]), float(grid[torch.searchsorted(cdf, 0.95)])
    return {"path": path, "root": root, "mean": mean, "sd": sd, "q05": q05, "q95": q95}


@pytest.fixture(scope="module")
def vi(problem):
    out = problem["root"] / "vi"
    metrics = calibrate(compose_config(overrides(problem["path"], [
        "task.method=vi", "task.iterations=300", "task.optimizer.lr=0.05", "task.particles=4",
        "task.lr_half_life=200", "task.draws=2000", "task.plot=true", "task.predictive_draws=8",
        "task.map_evaluations=0"])), out)
    # SVI alone, from the start (the MAP start: test_vi_starts_from_the_map_and_its_laplace_covariance_and_counts_their_
    # simulations; task.method=laplace: test_laplace_agrees_with_the_exact_posterior)
    return out, metrics


@pytest.fixture(scope="module")
def nuts(problem):
    out = problem["root"] / "nuts"
    metrics = calibrate(compose_config(overrides(problem["path"], [
        "task.method=nuts", "task.warmup=60", "task.draws=300", "task.chains=2", "task.plot=true",
        "task.predictive_draws=8"])), out)
    return out, metrics


def draws_of(out):
    return torch.tensor(pd.read_parquet(out / "posterior.parquet")[NAME].to_numpy())


def test_the_exact_posterior_is_away_from_the_bounds_and_the_start(problem):
    # the grid posterior is the reference: well inside [0, 2], narrower than the prior, the start outside it
    assert LO + 4 * problem["sd"] < problem["mean"] < HI - 4 * problem["sd"]
    assert problem["sd"] < 0.5 * (HI - LO) / math.sqrt(12)
    assert abs(START - problem["mean"]) > 1.5 * problem["sd"]


def test_nuts_agrees_with_the_exact_posterior(problem, nuts):
    out, metrics = nuts
    x = draws_of(out)
    ess = metrics["diagnostics"]["ess"][NAME]
    assert len(x) == 300 and ess > 50, ess
    assert metrics["diagnostics"]["rhat"][NAME] < 1.05
    assert metrics["diagnostics"]["divergences"] == 0
    # tolerances from the Monte Carlo error at the chains' ESS: 4 standard errors of the mean (sd / sqrt(ESS)),
    # of the sd (relative 1 / sqrt(2 ESS)), and of the fraction of draws inside the exact 90% interval
    # (binomial: sqrt(0.9 * 0.1 / ESS))
    assert abs(float(x.mean()) - problem["mean"]) < 4 * problem["sd"] / math.sqrt(ess)
    assert abs(float(x.std()) / problem["sd"] - 1) < 4 / math.sqrt(2 * ess)
    inside = float(((x > problem["q05"]) & (x < problem["q95"])).double().mean())
    assert abs(inside - 0.9) < 4 * math.sqrt(0.9 * 0.1 / ess)
    summary = pd.read_csv(out / "posterior_summary.csv").set_index("parameter")
    assert summary.loc[NAME, "rhat"] == pytest.approx(metrics["diagnostics"]["rhat"][NAME])
    assert summary.loc[NAME, "ess"] == pytest.approx(ess)


def test_vi_agrees_with_the_exact_posterior(problem, vi):
    out, metrics = vi
    x = draws_of(out)
    n = len(x)
    assert n == 2000
    # the guide is a normal in the prior's space (w = Phi^-1(beta / 2)), the exact posterior is not quite one:
    # an approximation allowance of 0.1 sd on the mean and 10% on the sd, plus 4 Monte Carlo standard errors
    # of the guide's independent draws
    assert abs(float(x.mean()) - problem["mean"]) < problem["sd"] * (0.1 + 4 / math.sqrt(n))
    assert abs(float(x.std()) / problem["sd"] - 1) < 0.1 + 4 / math.sqrt(2 * n)
    inside = float(((x > problem["q05"]) & (x < problem["q95"])).double().mean())
    assert abs(inside - 0.9) < 0.03 + 4 * math.sqrt(0.9 * 0.1 / n)
    assert metrics["posterior"][NAME]["mean"] == pytest.approx(float(x.mean()))
    assert metrics["fitted"][NAME] == pytest.approx(float(x.mean()))
    history = pd.read_csv(out / "loss.csv")
    assert len(history) == 300 and history["loss"].iloc[-20:].mean() < history["loss"].iloc[:5].mean()


def test_every_method_writes_the_same_outputs(problem, vi, nuts, tmp_path):
    runs = {"vi": vi[0], "nuts": nuts[0]}
    runs["map"] = tmp_path / "map"
    calibrate(compose_config(overrides(problem["path"], ["task.iterations=3", "task.plot=true",
                                                         "task.predictive_draws=8"])), runs["map"])
    for method, out in runs.items():
        for name in ("posterior.parquet", "posterior_summary.csv", "posterior_pairs.png", "posterior_predictive.png",
                     "fitted_params.json"):
            assert (out / name).stat().st_size > 0, (method, name)
        assert list(pd.read_parquet(out / "posterior.parquet").columns) == [NAME], method
        summary = pd.read_csv(out / "posterior_summary.csv")
        assert tuple(summary.columns) == SUMMARY_COLUMNS and summary.parameter.tolist() == [NAME], method
        assert (summary.q05 <= summary.q50).all() and (summary.q50 <= summary.q95).all()
    # map: a degenerate posterior, its fitted point
    point = pd.read_parquet(runs["map"] / "posterior.parquet")
    assert len(point) == 1
    assert point[NAME].iloc[0] == pytest.approx(pd.read_csv(runs["map"] / "loss.csv")[NAME].iloc[-1])
    assert pd.read_csv(runs["map"] / "posterior_summary.csv").sd.iloc[0] == 0.0


def test_vi_resume_is_bit_identical(problem, tmp_path):
    over = ["task.method=vi", "task.optimizer.lr=0.05", "task.draws=50", "task.checkpoint_every=3"]
    calibrate(compose_config(overrides(problem["path"], [*over, "task.iterations=6"])), tmp_path / "full")
    calibrate(compose_config(overrides(problem["path"], [*over, "task.iterations=3"])), tmp_path / "first")
    ckpt = tmp_path / "first" / "checkpoint.pt"
    calibrate(compose_config(overrides(problem["path"], [*over, "task.iterations=6", f"task.resume={ckpt}"])),
              tmp_path / "second")
    for name in ("loss.csv", "posterior.parquet", "posterior_summary.csv"):
        assert (tmp_path / "second" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    # the integrity checks of every checkpoint: a modified file, another config
    raw = bytearray(ckpt.read_bytes())
    raw[-10] ^= 1
    (tmp_path / "bad.pt").write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="modified or corrupted"):
        calibrate(compose_config(overrides(problem["path"], [*over, "task.iterations=6",
                                                             f"task.resume={tmp_path / 'bad.pt'}"])), tmp_path / "x")
    with pytest.raises(ConfigError, match=r"different config \(.*task.method: \"vi\" -> \"map\""):
        calibrate(compose_config(overrides(problem["path"], ["task.iterations=6", f"task.resume={ckpt}"])),
                  tmp_path / "y")


def test_nuts_and_sbi_refuse_what_they_cannot_do(problem, tmp_path):
    with pytest.raises(ConfigError, match="task.method=nuts does not resume"):
        calibrate(compose_config(overrides(problem["path"], ["task.method=nuts", f"task.resume={tmp_path}/c.pt"])),
                  tmp_path)
    if importlib.util.find_spec("sbi") is None:
        with pytest.raises(ConfigError, match=r"task.method=sbi needs the sbi package, in the extra 'sbi'"):
            calibrate(compose_config(overrides(problem["path"], ["task.method=sbi"])), tmp_path)


def test_unknown_methods_priors_and_losses_are_refused_with_the_valid_names(problem, tmp_path):
    from lpm_graph.config import validate_run_config

    def check(extra):
        validate_run_config(compose_config(overrides(problem["path"], extra)))

    with pytest.raises(ConfigError, match=r"task.method must be one of \['map', 'vi', 'laplace', 'nuts', 'sbi'\], got 'mcmc'"):
        check(["task.method=mcmc"])
    assert METHODS == ("map", "vi", "laplace", "nuts", "sbi")
    valid = "; ".join(f"{d}({', '.join(a)})" for d, a in PRIORS.items())
    with pytest.raises(ConfigError, match=rf"task.priors.{NAME}.dist: unknown prior 'Cauchy'; valid priors: "
                                          + valid.replace("(", r"\(").replace(")", r"\)")):
        check([f"+task.priors={{{NAME}: {{dist: Cauchy, loc: 0, scale: 1}}}}"])
    with pytest.raises(ConfigError, match=r"LogNormal takes \['loc', 'scale'\], got \['mean', 'scale'\]"):
        check([f"+task.priors={{{NAME}: {{dist: LogNormal, mean: 0, scale: 1}}}}"])
    with pytest.raises(ConfigError, match=r"task.method=vi needs a likelihood: set task.loss to one of "
                                          r"\['poisson', 'negbin'\]"):
        check(["task.method=vi", "task.loss=mse"])
    with pytest.raises(ConfigError, match=r"task.priors names \['seir.exposed_period'\], which are not learnable"):
        calibrate(compose_config(overrides(problem["path"], [
            "task.method=vi", "+task.priors={seir.exposed_period: {dist: Normal, loc: 3, scale: 1}}"])), tmp_path)
    with pytest.raises(ConfigError, match=r"task.priors.transmission.beta_community: Normal\(loc=0, scale=-1\) is not "
                                          "a valid prior"):
        calibrate(compose_config(overrides(problem["path"], [
            "task.method=vi", f"+task.priors={{{NAME}: {{dist: Normal, loc: 0, scale: -1}}}}"])), tmp_path)
    # a learnable bounded on one side has no default prior
    with pytest.raises(ConfigError, match=r"bounded on one side \(model.bounds\), so it has no default prior"):
        calibrate(compose_config(overrides(problem["path"], ["task.method=nuts",
                                                             f"+model.bounds.{NAME}=[0.0,null]"])), tmp_path)


def test_a_declared_prior_moves_the_posterior_and_map_adds_it_only_when_declared(problem, tmp_path):
    # a LogNormal prior centred at 0.3 (sd ~0.03 on log scale): the posterior follows the prior
    prior = f"+task.priors={{{NAME}: {{dist: LogNormal, loc: {math.log(0.3)}, scale: 0.1}}}}"
    metrics = calibrate(compose_config(overrides(problem["path"], ["task.method=vi", "task.iterations=150",
                                                                   "task.optimizer.lr=0.05", "task.draws=500",
                                                                   prior])), tmp_path / "vi")
    assert metrics["priors"] == {NAME: "LogNormal"}
    assert metrics["posterior"][NAME]["mean"] < problem["mean"] - 2 * problem["sd"]
    # map: the same prior pulls the point estimate; without priors map is the plain optimiser
    plain = calibrate(compose_config(overrides(problem["path"], ["task.iterations=40"])), tmp_path / "plain")
    with_prior = calibrate(compose_config(overrides(problem["path"], ["task.iterations=40", prior])), tmp_path / "p")
    assert with_prior["fitted"][NAME] < plain["fitted"][NAME] - 0.1


def test_sbi_runs_quietly_inside_its_run_directory_and_writes_the_same_outputs(problem, tmp_path, monkeypatch,
                                                                              capfd):
    """NPE (the sbi extra) on 300 simulations.  Its error is the approximation's, not a Monte Carlo error, so what
    is checked is what any usable approximation must do: the exact mean inside its 90% interval, narrower than
    the prior; and the schema, the count of simulations, nothing printed and nothing written outside the run."""
    pytest.importorskip("sbi")
    monkeypatch.chdir(tmp_path)  # sbi's default tracker wrote TensorBoard files into ./sbi-logs
    out = tmp_path / "sbi"
    metrics = calibrate(compose_config(overrides(problem["path"], [
        "task.method=sbi", "task.simulations=300", "task.draws=1000", "task.plot=true", "task.predictive_draws=8"])),
        out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sbi"]
    assert capfd.readouterr().out == ""
    for name in ("posterior.parquet", "posterior_summary.csv", "posterior_pairs.png", "posterior_predictive.png",
                 "fitted_params.json"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "posterior_summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS and summary.parameter.tolist() == [NAME]
    x = draws_of(out)
    assert len(x) == 1000 and bool(((x > LO) & (x < HI)).all())
    assert float(x.quantile(0.05)) < problem["mean"] < float(x.quantile(0.95))
    assert float(x.std()) < (HI - LO) / math.sqrt(12)
    assert metrics["simulations"] == 301 and metrics["diagnostics"]["simulations_trained_on"] == 300
    assert metrics["diagnostics"]["density_estimator"] == "mdn"  # one dimension: sbi's flows are Gaussians there
    assert metrics["diagnostics"]["summary_entries"] == STEPS  # every observed day varies over the prior


@pytest.mark.parametrize("guide", ["truncated_normal", "normal"])
def test_vi_starts_from_the_map_and_its_laplace_covariance_and_counts_their_simulations(problem, tmp_path,
                                                                                       monkeypatch, guide):
    from lpm_graph.core.loop import Model

    forwards = []
    forward = Model.forward

    def counted(self, *args, **kwargs):
        forwards.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(Model, "forward", counted)
    # one SVI step at a negligible learning rate: the posterior is the guide's start
    over = ["task.method=vi", "task.iterations=1", "task.optimizer.lr=1e-12", "task.draws=2000",
            "task.particles=2", f"task.guide={guide}"]
    metrics = calibrate(compose_config(overrides(problem["path"], over)), tmp_path / "laplace")
    x = draws_of(tmp_path / "laplace")
    n = len(x)
    # the start against the exact posterior (truncated_normal: the expansion's normal in beta at the MAP, cut at
    # the bounds; normal: the Laplace approximation in z = logit(beta / 2)): the allowance of the vi test (0.1 sd
    # on the mean, 10% on the sd) plus 4 Monte Carlo standard errors of the independent draws
    assert abs(float(x.mean()) - problem["mean"]) < problem["sd"] * (0.1 + 4 / math.sqrt(n))
    assert abs(float(x.std()) / problem["sd"] - 1) < 0.1 + 4 / math.sqrt(2 * n)
    # every simulation is counted: the MAP fit's, the 2 x 1 of the Hessian, the guide's set-up (Pyro's autoguide
    # runs the model once), 2 particles of the one step, the run at the posterior mean; each is a run of the model
    setup = 1 if guide == "normal" else 0
    diag = metrics["diagnostics"]
    assert diag["guide"] == guide
    # task.map_evaluations=60: L-BFGS stops at the first iteration past it (a line search may overshoot it a little)
    assert diag["laplace_simulations"] == 2 and 4 <= diag["map_simulations"] < 2 * 60
    assert metrics["simulations"] == diag["map_simulations"] + 2 + setup + 2 + 1 == len(forwards)
    # without the MAP fit the guide starts at the config's value, far from the posterior, and narrow
    forwards.clear()
    metrics = calibrate(compose_config(overrides(problem["path"], [*over, "task.map_evaluations=0"])),
                        tmp_path / "start")
    x = draws_of(tmp_path / "start")
    assert abs(float(x.mean()) - START) < 0.05 and float(x.std()) < problem["sd"]
    assert "map_simulations" not in metrics["diagnostics"]
    assert metrics["simulations"] == setup + 2 + 1 == len(forwards)


def test_vi_with_renyis_divergence_agrees_with_the_exact_posterior_and_is_refused_where_undefined(problem, tmp_path):
    from lpm_graph.config import validate_run_config

    over = ["task.method=vi", "task.iterations=20", "task.optimizer.lr=0.005", "task.draws=2000",
            "task.particles=4", "task.renyi_alpha=0"]
    metrics = calibrate(compose_config(overrides(problem["path"], over)), tmp_path / "renyi")
    x = draws_of(tmp_path / "renyi")
    n = len(x)
    # the allowance of the vi test plus 4 Monte Carlo standard errors of the guide's draws
    assert abs(float(x.mean()) - problem["mean"]) < problem["sd"] * (0.1 + 4 / math.sqrt(n))
    assert abs(float(x.std()) / problem["sd"] - 1) < 0.1 + 4 / math.sqrt(2 * n)
    # 4 particles a step, each a simulation
    assert metrics["simulations"] == metrics["diagnostics"]["map_simulations"] + 2 + 20 * 4 + 1
    history = pd.read_csv(tmp_path / "renyi" / "loss.csv")
    assert len(history) == 20 and history["loss"].notna().all()
    for bad, what in ((["task.renyi_alpha=1"], "order other than 1"),
                      (["task.renyi_alpha=0", "task.particles=1"], "task.particles >= 2")):
        with pytest.raises(ConfigError, match=what):
            validate_run_config(compose_config(overrides(problem["path"], ["task.method=vi",
                                                                           *bad])))


# -- task.method=laplace ------------------------------------------------------------------------------------------
def _box_prior():
    """Two learnable elements, Uniform over [0, 2] and [0, 1] (their bounds), float64."""
    from lpm_graph.core.params import ParameterSet
    from lpm_graph.tasks.posterior import Prior

    params = ParameterSet({"a": 0.5, "b": 0.5}, learnable=["a", "b"], bounds={"a": [0.0, 2.0], "b": [0.0, 1.0]},
                          dtype=torch.float64)
    return Prior(params, None, required=True)


def test_constrained_laplace_samples_the_truncated_normal_of_a_quadratic_log_likelihood():
    """With a log-likelihood that is exactly quadratic in theta and a Uniform prior, the approximation is the
    normal truncated to the bounds: here one piled against a bound (mean 0.1 of [0, 2], sd 0.3) and one whose
    untruncated mean (1.3) lies outside [0, 1].  Its draws (importance sampling, resampled) against scipy's
    truncated normals, within 4 Monte Carlo standard errors at the sampler's own effective sample size."""
    from scipy.stats import truncnorm

    from lpm_graph.tasks.posterior import ConstrainedLaplace

    prior = _box_prior()
    m, s = torch.tensor([0.1, 1.3], dtype=torch.float64), torch.tensor([0.3, 0.4], dtype=torch.float64)
    theta0 = torch.tensor([0.4, 0.7], dtype=torch.float64)  # any expansion point: the quadratic is exact
    g, hess = -(theta0 - m) / s ** 2, -torch.diag(1 / s ** 2)
    n = 4000
    z, info = ConstrainedLaplace(prior, theta0, g, hess).sample(n, 20000, seed=0)
    x = prior.theta(z)
    ess = info["surrogate_ess"]
    assert ess > 2000, ess
    err = math.sqrt(1 / ess + 1 / n)  # resampling n of the weighted draws: both errors
    for j, (lo, hi) in enumerate([(0.0, 2.0), (0.0, 1.0)]):
        exact = truncnorm((lo - float(m[j])) / float(s[j]), (hi - float(m[j])) / float(s[j]), loc=float(m[j]),
                          scale=float(s[j]))
        assert abs(float(x[:, j].mean()) - exact.mean()) < 4 * exact.std() * err, j
        assert abs(float(x[:, j].std()) / exact.std() - 1) < 4 * err, j
        for p in (0.05, 0.5, 0.95):
            below = float((x[:, j] < exact.ppf(p)).double().mean())
            assert abs(below - p) < 4 * math.sqrt(p * (1 - p)) * err, (j, p)


def test_constrained_laplace_differentiates_the_simulator_in_the_bounded_space_and_counts_its_simulations():
    """A stand-in simulator whose log-likelihood is a known quadratic in theta (a = 0.35, b = 0.6): the gradient and
    Hessian recovered from 2 x 2 gradient evaluations through theta(z), float64, against the exact ones."""
    from lpm_graph.tasks.posterior import constrained_laplace

    prior = _box_prior()
    a = torch.tensor([[-3.0, 1.2], [1.2, -8.0]], dtype=torch.float64)
    c = torch.tensor([0.9, 0.2], dtype=torch.float64)

    class Quadratic:
        calls = 0

        def log_likelihood(self, z, seed):
            self.calls += 1
            d = prior.theta(z) - c
            return 0.5 * d @ a @ d + 2.0 * d.sum()

    sim = Quadratic()
    theta0 = torch.tensor([0.35, 0.6], dtype=torch.float64)
    approx, info = constrained_laplace(sim, prior, _unconstrained(prior, theta0), seed=1)
    assert sim.calls == 4 == info["laplace_simulations"]
    assert torch.allclose(approx.theta0, theta0, atol=1e-12)
    assert torch.allclose(approx.hess, a, atol=1e-6)
    assert torch.allclose(approx.g, a @ (theta0 - c) + 2.0, atol=1e-6)
    assert info["laplace_positive_curvatures"] == 0
    # a saddle: its direction of positive curvature is taken as flat (eigenvalue 0), the other one kept
    a = torch.tensor([[-3.0, 1.2], [1.2, 2.0]], dtype=torch.float64)
    approx, info = constrained_laplace(sim, prior, _unconstrained(prior, theta0), seed=1)
    evals, evecs = torch.linalg.eigh(a)
    assert info["laplace_positive_curvatures"] == 1 and evals[0] < 0 < evals[1]
    assert torch.allclose(approx.hess, evals[0] * torch.outer(evecs[:, 0], evecs[:, 0]), atol=1e-6)


def test_the_expansions_normal_and_vis_start_from_it_inside_the_bounds():
    """ConstrainedLaplace.normal: the quadratic's maximum and inverse curvature, plus a declared prior's own; vi's
    truncated-normal guide starts at it, clamped into the bounds where a flat direction's tilt puts it outside."""
    from types import SimpleNamespace

    from lpm_graph.core.params import ParameterSet
    from lpm_graph.tasks.posterior import ConstrainedLaplace, Prior, _truncated_normal_guide

    prior = _box_prior()
    theta0 = torch.tensor([0.8, 0.3], dtype=torch.float64)
    h = torch.tensor([[-20.0, 4.0], [4.0, -50.0]], dtype=torch.float64)
    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mean, cov = ConstrainedLaplace(prior, theta0, g, h).normal()
    assert torch.allclose(cov, torch.linalg.inv(-h), atol=1e-12)
    assert torch.allclose(mean, theta0 + torch.linalg.solve(-h, g), atol=1e-12)
    # a declared Normal(0.5, 0.25) prior on b adds its precision 16 and its gradient -(0.3 - 0.5) * 16
    params = ParameterSet({"a": 0.5, "b": 0.5}, learnable=["a", "b"], bounds={"a": [0.0, 2.0], "b": [0.0, 1.0]},
                          dtype=torch.float64)
    normal_b = Prior(params, {"b": {"dist": "Normal", "loc": 0.5, "scale": 0.25}}, required=True)
    mean, cov = ConstrainedLaplace(normal_b, theta0, g, h).normal()
    h_post, g_post = h - torch.diag(torch.tensor([0.0, 16.0], dtype=torch.float64)), g + torch.tensor([0.0, 3.2])
    assert torch.allclose(cov, torch.linalg.inv(-h_post), atol=1e-10)
    assert torch.allclose(mean, theta0 + torch.linalg.solve(-h_post, g_post.double()), atol=1e-10)

    class Tilted:
        """log L = 5 a - 25 (b - 0.5)^2: flat in a but for its tilt towards a's upper bound."""
        calls = 0

        def log_likelihood(self, z, seed):
            self.calls += 1
            theta = prior.theta(z)
            return 5.0 * theta[..., 0] - 25.0 * (theta[..., 1] - 0.5) ** 2

    task = SimpleNamespace(map_evaluations=30, map_starts=1, resume=None)
    _, guide, info, _ = _truncated_normal_guide(Tilted(), prior, task, SimpleNamespace(seed=0))
    # unclamped, the expansion's maximum in a lies about 4 x 5 = 20 beyond the range [0, 2] (the flat direction's
    # variance is floored at the range squared); clamped it is the upper bound, b's at its own maximum 0.5
    assert float(guide.center[0]) == 2.0 and abs(float(guide.center[1]) - 0.5) < 0.02
    assert info["laplace_simulations"] == 4
    with torch.no_grad():
        draws = guide.get_posterior().sample((4000,))
    assert bool(torch.isfinite(draws).all()) and float(draws[:, 0].mean()) > 1.0


def _unconstrained(prior, theta):
    from lpm_graph.tasks.posterior import _unconstrained as inverse

    return inverse(prior, theta)


def test_pareto_smoothing_keeps_a_good_proposal_and_flags_a_bad_one():
    """Target N(0, 1).  From N(0, 1.5^2) the weights are bounded: k-hat below 0.5, only the largest
    min(S / 5, 3 sqrt(S)) weights change, capped at the largest, their order kept, and the smoothed estimate of
    E[x^2] = 1 within 4 standard errors (var x^2 = 2, at the weights' effective sample size).  From N(0, 0.4^2) the
    weights have no variance (k = 1 - 0.4^2 = 0.84): k-hat above 0.7."""
    from lpm_graph.tasks.posterior import pareto_smoothed

    gen = torch.Generator().manual_seed(0)
    count = 4000
    x = 1.5 * torch.randn(count, generator=gen, dtype=torch.float64)
    raw = -0.5 * x ** 2 + 0.5 * (x / 1.5) ** 2
    smoothed, khat = pareto_smoothed(raw)
    assert khat < 0.5
    m = int(min(0.2 * count, 3 * math.sqrt(count)))
    order = torch.argsort(raw)
    assert torch.equal(smoothed[order[:-m]], raw[order[:-m]])
    assert bool((smoothed <= raw.max() + 1e-12).all())
    assert bool((smoothed[order[-m:]].diff() >= -1e-12).all())
    w = torch.softmax(smoothed, 0)
    ess = float(1 / (w ** 2).sum())
    assert abs(float((w * x ** 2).sum()) - 1.0) < 4 * math.sqrt(2 / ess)
    y = 0.4 * torch.randn(count, generator=gen, dtype=torch.float64)
    assert pareto_smoothed(-0.5 * y ** 2 + 0.5 * (y / 0.4) ** 2)[1] > 0.7


def test_laplace_agrees_with_the_exact_posterior(problem, tmp_path):
    """task.method=laplace (the MAP, the log-likelihood's expansion in theta there, the exact prior): against the grid
    posterior with the allowance of the vi test (0.1 sd on the mean, 10% on the sd) plus 4 Monte Carlo standard
    errors at the sampler's effective sample size; every simulation counted; then with a Pareto-smoothed
    importance correction of 100 simulations: the approximation is close (the checks above), so the weights are
    near equal (an effective sample size over half of them, a finite k-hat), and the corrected draws agree within
    the errors at that effective sample size."""
    out = tmp_path / "cl"
    metrics = calibrate(compose_config(overrides(problem["path"], ["task.method=laplace", "task.draws=2000",
                                                                   "task.plot=true", "task.predictive_draws=8"])), out)
    x, n, diag = draws_of(out), 2000, metrics["diagnostics"]
    assert len(x) == n and diag["approximation"] == "constrained_laplace" and metrics["iterations"] == 0
    err = math.sqrt(1 / diag["surrogate_ess"] + 1 / n)
    assert abs(float(x.mean()) - problem["mean"]) < problem["sd"] * (0.1 + 4 * err)
    assert abs(float(x.std()) / problem["sd"] - 1) < 0.1 + 4 * err
    inside = float(((x > problem["q05"]) & (x < problem["q95"])).double().mean())
    assert abs(inside - 0.9) < 0.03 + 4 * math.sqrt(0.9 * 0.1) * err
    # the MAP fit's, the 2 x 1 of the Hessian, the run at the posterior mean; the loss history is the MAP fit's
    assert metrics["simulations"] == diag["map_simulations"] + 2 + 1
    assert len(pd.read_csv(out / "loss.csv")) == diag["map_simulations"]
    for name in ("posterior.parquet", "posterior_summary.csv", "posterior_pairs.png", "posterior_predictive.png"):
        assert (out / name).stat().st_size > 0, name
    assert tuple(pd.read_csv(out / "posterior_summary.csv").columns) == SUMMARY_COLUMNS
    corrected = calibrate(compose_config(overrides(problem["path"], ["task.method=laplace", "task.draws=2000",
                                                                     "task.importance_samples=100"])), tmp_path / "is")
    y, diag = draws_of(tmp_path / "is"), corrected["diagnostics"]
    assert corrected["simulations"] == diag["map_simulations"] + 2 + 100 + 1
    assert math.isfinite(diag["psis_khat"]) and 50 < diag["importance_ess"] <= 100
    err = math.sqrt(1 / diag["importance_ess"] + 1 / n)
    assert abs(float(y.mean()) - problem["mean"]) < problem["sd"] * (0.1 + 4 * err)
    assert len(y.unique()) <= 100  # the resampled simulated draws
    # one re-expansion at the approximation's mode: 2 x 1 more simulations, the same posterior within its errors
    refined = calibrate(compose_config(overrides(problem["path"], ["task.method=laplace", "task.draws=2000",
                                                                   "task.laplace_refinements=1"])), tmp_path / "re")
    r, diag = draws_of(tmp_path / "re"), refined["diagnostics"]
    assert refined["simulations"] == diag["map_simulations"] + 2 * 2 + 1 and diag["laplace_simulations"] == 4
    err = math.sqrt(1 / diag["surrogate_ess"] + 1 / n)
    assert abs(float(r.mean()) - problem["mean"]) < problem["sd"] * (0.1 + 4 * err)
    assert abs(float(r.std()) / problem["sd"] - 1) < 0.1 + 4 * err


def test_laplace_refuses_what_it_does_not_do(problem, tmp_path):
    from lpm_graph.config import validate_run_config

    def check(extra):
        validate_run_config(compose_config(overrides(problem["path"], extra)))

    with pytest.raises(ConfigError, match="task.method=laplace runs no SVI"):
        check(["task.method=laplace", "task.renyi_alpha=0", "task.particles=2"])
    with pytest.raises(ConfigError, match="task.laplace_refinements must be >= 0"):
        check(["task.method=laplace", "task.laplace_refinements=-1"])
    with pytest.raises(ConfigError, match="corrects task.method=laplace; with task.method=vi set it to 0"):
        check(["task.method=vi", "task.importance_samples=10"])
    with pytest.raises(ConfigError, match="task.method=laplace does not resume"):
        calibrate(compose_config(overrides(problem["path"], ["task.method=laplace", f"task.resume={tmp_path}/c.pt"])),
                  tmp_path)


def test_the_guide_fitted_to_the_expansion_is_its_truncated_normal():
    """One element, Uniform over [0, 1], a quadratic log-likelihood whose maximum (1.3) lies beyond the upper bound:
    the expansion is the normal N(1.3, 0.25^2) cut to [0, 1], which is in the guide's family.  Started clamped at the
    bound with the normal's sd, fit_to_expansion reaches it: mean and sd against scipy's truncated normal within
    the optimiser's noise (256 particles a step: the ELBO gradient's sd at the optimum is about 0.06 of a unit, and
    the halving learning rate averages it down), and the ELBO is the log normaliser of the expansion."""
    import scipy.stats as st

    from lpm_graph.core.params import ParameterSet
    from lpm_graph.tasks.guides import BoundedPrior, TruncatedNormalGuide
    from lpm_graph.tasks.posterior import ConstrainedLaplace, Prior, fit_to_expansion

    params = ParameterSet({"a": 0.5}, learnable=["a"], bounds={"a": [0.0, 1.0]}, dtype=torch.float64)
    prior = Prior(params, None, required=True)
    lo, hi = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    theta0, sd, peak = torch.tensor([0.9], dtype=torch.float64), 0.25, 1.3
    hess = torch.tensor([[-1 / sd ** 2]], dtype=torch.float64)
    approx = ConstrainedLaplace(prior, theta0, -hess[0] * (peak - theta0), hess)
    mean, cov = approx.normal()
    assert float(mean) == pytest.approx(peak) and float(cov) == pytest.approx(sd ** 2)
    guide = TruncatedNormalGuide(hi.clone(), torch.tensor([sd], dtype=torch.float64),
                                 torch.ones(1, 1, dtype=torch.float64), lo, hi)
    elbo = fit_to_expansion(guide, approx, BoundedPrior(prior, lo, hi), seed=0)
    ref = st.truncnorm((0 - peak) / sd, (1 - peak) / sd, loc=peak, scale=sd)
    with torch.no_grad():
        x = guide.get_posterior().sample((200000,))
    assert abs(float(x.mean()) - ref.mean()) < 0.05 * ref.std()
    assert abs(float(x.std()) / ref.std() - 1) < 0.05
    # the clamped start (a half normal at the bound: mean 0.80, sd 0.15) is 0.7 sd and 43% off both; at the optimum
    # the ELBO is the log of the expansion's integral over the bounds (the guide is then exact)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
    log_z = float(torch.logsumexp(approx.log_likelihood_theta(grid), 0) + math.log(1 / 20000))
    assert elbo == pytest.approx(log_z, abs=0.02)
