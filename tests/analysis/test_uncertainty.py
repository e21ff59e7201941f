"""Posterior draws in analyses: the mixture interval, and the checks of a posterior file."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from lpm_graph.analysis.statistics import t_quantile
from lpm_graph.analysis.uncertainty import load_posterior, mixture_interval, pick
from lpm_graph.errors import DataFileError

PARAMS = {"transmission.beta_community": torch.tensor(0.3), "seir.fatality": torch.zeros(3)}


def test_one_repeated_component_is_the_student_t_interval_of_the_plain_analysis():
    half = t_quantile(0.975, 4) * 0.7
    low, high = mixture_interval([2.0] * 5, [0.7] * 5, 4)
    assert low == pytest.approx(2.0 - half, rel=1e-10) and high == pytest.approx(2.0 + half, rel=1e-10)


def test_the_mixture_quantiles_solve_its_cdf():
    # with many degrees of freedom t is the normal to ~1e-4: the quantiles checked against a normal mixture's CDF
    means, errors = [-3.0, 0.0, 5.0], [1.0, 0.5, 2.0]
    low, high = mixture_interval(means, errors, 2000)

    def cdf(x):
        return sum(float(torch.special.ndtr(torch.tensor((x - m) / e, dtype=torch.float64)))
                   for m, e in zip(means, errors)) / 3

    assert cdf(low) == pytest.approx(0.025, abs=2e-4) and cdf(high) == pytest.approx(0.975, abs=2e-4)


def test_spread_means_widen_the_interval_beyond_every_component_mean():
    point = mixture_interval([1.0] * 4, [0.2] * 4, 3)
    spread = mixture_interval([0.4, 0.8, 1.2, 1.6], [0.2] * 4, 3)
    assert spread[1] - spread[0] > point[1] - point[0]
    # each draw weighs 1/4 > 2.5%: the interval holds every draw's mean
    assert spread[0] < 0.4 and spread[1] > 1.6


def test_point_components_and_one_replicate():
    assert mixture_interval([0.0, 0.0], [0.0, 0.0], 3) == (0.0, 0.0)  # a baseline against itself
    low, high = mixture_interval([1.0, 2.0, 3.0], [math.nan] * 3, 0)  # one replicate: the draws' quantiles
    assert (low, high) == pytest.approx((1.05, 2.95))
    assert all(math.isnan(x) for x in mixture_interval([1.0], [math.nan], 0))


def write(tmp_path, frame, name="posterior.parquet"):
    path = tmp_path / name
    frame.to_parquet(path, index=False)
    return path


def test_a_posterior_file_is_read_per_parameter_and_element(tmp_path):
    path = write(tmp_path, pd.DataFrame({"transmission.beta_community": [0.2, 0.4, 0.6],
                                         "seir.fatality[0]": [0.1, 0.2, 0.3], "seir.fatality[1]": [1.0, 2.0, 3.0],
                                         "seir.fatality[2]": [4.0, 5.0, 6.0], "observation.reporting_fraction":
                                         [0.5, 0.5, 0.5]}))
    post = load_posterior(path, PARAMS, ignore=["observation.reporting_fraction"])
    assert post.draws == 3 and post.ignored == ["observation.reporting_fraction"]
    assert post.values["seir.fatality"][1].tolist() == [0.2, 2.0, 5.0]
    assert post.at(2)["transmission.beta_community"].item() == 0.6
    assert pick(post, 2) == [0, 2] and pick(post, None) == [0, 1, 2] and pick(post, 10) == [0, 1, 2]


@pytest.mark.parametrize("frame, match", [
    (pd.DataFrame({"transmission.beta_nowhere": [0.1]}),
     r"column 'transmission.beta_nowhere' of '.*bad.parquet' names parameter 'transmission.beta_nowhere', which the "
     r"model does not have"),
    (pd.DataFrame({"observation.reporting_fraction": [0.5]}),
     r"column 'observation.reporting_fraction' .* task.posterior_ignore=\[observation.reporting_fraction\]"),
    (pd.DataFrame({"seir.fatality[0]": [0.1], "seir.fatality[1]": [0.1]}),
     r"the columns of 'seir.fatality' in '.*bad.parquet' do not match its shape \[3\]; "
     r"missing \['seir.fatality\[2\]'\]"),
    (pd.DataFrame({"transmission.beta_community[0]": [0.1]}),
     r"the columns of 'transmission.beta_community' .* shape \[\]; missing \['transmission.beta_community'\]; column "
     r"\['transmission.beta_community\[0\]'\] outside it"),
    (pd.DataFrame({"transmission.beta_community": ["high"]}),
     r"column 'transmission.beta_community' of '.*bad.parquet' is not numeric"),
    (pd.DataFrame({"transmission.beta_community": [0.1, float("nan")]}),
     r"column 'transmission.beta_community' of '.*bad.parquet' has a non-finite value in row 1"),
    (pd.DataFrame({"transmission.beta_community": []}, dtype=float), r"'.*bad.parquet' holds no draws"),
    (pd.DataFrame({"beta community": [0.1]}), r"column 'beta community' of '.*bad.parquet' is not a parameter element"),
])
def test_a_bad_posterior_file_is_an_error_naming_the_file_and_column(tmp_path, frame, match):
    with pytest.raises(DataFileError, match=match):
        load_posterior(write(tmp_path, frame, "bad.parquet"), PARAMS)


def test_a_file_that_is_not_parquet_or_absent_is_an_error_naming_it(tmp_path):
    path = tmp_path / "posterior.parquet"
    path.write_text("parameter,mean\nbeta,0.3\n")
    with pytest.raises(DataFileError, match=r"'.*posterior.parquet' is not a readable Parquet file"):
        load_posterior(path, PARAMS)
    with pytest.raises(DataFileError, match=r"'.*nothing.parquet' is not a file"):
        load_posterior(tmp_path / "nothing.parquet", PARAMS)
    good = write(tmp_path, pd.DataFrame({"transmission.beta_community": [0.1]}), "good.parquet")
    with pytest.raises(DataFileError, match=r"task.posterior_ignore names \['seir.x'\], which are not columns"):
        load_posterior(good, PARAMS, ignore=["seir.x"])
