"""The neural behaviour: seeded weights, batched decisions, gradients through the simulator."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from lpm_graph.behavior import DecisionMLP, NeuralBehavior
from lpm_graph.errors import ConfigError
from tests.conftest import compose_config
from tests.helpers import assert_grad_matches_central_differences

ROOT = Path(__file__).resolve().parents[2]


def _net_weights(b):
    return torch.cat([p.detach().flatten() for p in b.net.parameters()])


def test_initial_weights_are_a_function_of_the_seed_and_leave_torch_rng_alone():
    net = DecisionMLP(3, 1)
    state = torch.get_rng_state()
    a = NeuralBehavior(net, features=["age"], inputs=["person.x", "person.y"], seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # whatever the global state
    b = NeuralBehavior(DecisionMLP(3, 1), features=["age"], inputs=["person.x", "person.y"], seed=3)
    c = NeuralBehavior(DecisionMLP(3, 1), features=["age"], inputs=["person.x", "person.y"], seed=4)
    assert torch.equal(_net_weights(a), _net_weights(b))
    assert not torch.equal(_net_weights(a), _net_weights(c))


def test_the_config_seeds_the_network_from_the_runs_seed():
    w = {s: _net_weights(instantiate(compose_config(["behavior=neural", f"seed={s}"]).model,
                                     _convert_="all").process("neural")) for s in (0, 0, 1)}
    m0 = instantiate(compose_config(["behavior=neural", "seed=0"]).model, _convert_="all").process("neural")
    assert torch.equal(w[0], _net_weights(m0)) and not torch.equal(w[0], w[1])


def test_a_network_of_the_wrong_width_is_refused_with_the_widths():
    with pytest.raises(ConfigError, match=r"in_features is 3 but the behaviour gives it 4"):
        NeuralBehavior(DecisionMLP(3, 1), features=["age"], inputs=["a.b", "a.c", "a.d"])
    with pytest.raises(ConfigError, match=r"out_features is 2 but the behaviour gives it 1"):
        NeuralBehavior(DecisionMLP(4, 2), decisions=["stays_home"], features=["age"], inputs=["a.b", "a.c", "a.d"])


def _model(population, overrides=()):
    cfg = compose_config(["behavior=neural", "model.mode=expected", *overrides])
    return instantiate(cfg.model, _convert_="all", dtype=torch.float64).to(torch.float64)


def test_decisions_are_batched_over_agents_and_replicates_and_differ_by_age(population):
    model = instantiate(compose_config(["behavior=neural"]).model, _convert_="all")
    with torch.no_grad():
        traj = model(population, steps=6, seed=2, replicates=3)
    share = traj.series["stays_home"]
    assert share.shape == (7, 3) and bool((share[1:] > 0).all() and (share[1:] < 1).all())
    by_age = traj.grouped["age"]["stays_home"][-1, :, 0]
    assert float(by_age.max() - by_age.min()) > 1e-4, by_age  # age is an input


def test_gradient_of_an_outcome_in_network_weights_matches_finite_differences(population):
    model = _model(population, ["model.params.transmission.beta_community=0.6"])
    graph = model.prepare(population, torch.float64)
    net = model.process("neural").net
    weight = net.layers[0].weight

    def outcome():
        traj = model(graph, steps=15, seed=0)
        return traj.series["new_infections"].sum() + 100.0 * traj.series["stays_home"].sum()

    assert_grad_matches_central_differences(outcome, weight, [(0, 0), (1, 1), (3, 2), (5, 3)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The output folder of a short task=calibrate run that trained the network (+experiment=behavior_neural)."""
    import warnings

    from lpm_graph.errors import CalibrationWarning
    from lpm_graph.tasks.calibrate import calibrate

    out = tmp_path_factory.mktemp("calibrated")
    obs = pd.read_csv(ROOT / "data" / "observations" / "behavior_synthetic.csv").head(12)
    obs["cases"] *= 400 / 20000  # the shipped series, of 20,000 people, at this size
    obs.to_csv(out.parent / "obs.csv", index=False)
    cfg = compose_config(["+experiment=behavior_neural", "population.num_people=400", "steps=12", "progress=false",
                          f"observations.path={out.parent / 'obs.csv'}",
                          "task.plot=false", "model.checkpoint=false", "task.iterations=2",
                          "task.checkpoint_every=0", "task.optimizer.lr=0.3"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # 400 people against observations of 20,000
        calibrate(cfg, out)
    return out


def _neural(overrides=()):
    from lpm_graph.tasks.simulate import instantiate_config  # our errors unwrapped from hydra's

    return instantiate_config(compose_config(["behavior=neural", *overrides]).model).process("neural")


def test_a_later_run_starts_from_the_network_a_calibration_trained(trained, tmp_path):
    from lpm_graph.tasks.checkpoint import read
    from lpm_graph.tasks.simulate import simulate

    saved = {n[len("behavior.1."):]: v for n, v in read(trained / "checkpoint.pt")["learnable"].items()
             if n.startswith("behavior.1.")}
    assert sorted(saved) == sorted(n for n, _ in _neural().named_parameters())
    for where in (trained, trained / "checkpoint.pt"):  # the run's folder or its checkpoint
        loaded = _neural([f"model.behavior.neural.weights={where}"])
        for n, p in loaded.named_parameters():
            assert torch.equal(p.detach(), saved[n]), n
            assert p.requires_grad  # trainable as configured: a calibration may go on from them
    seeded = _neural()
    assert any(not torch.equal(p.detach(), saved[n]) for n, p in seeded.named_parameters())  # it was trained
    # the simulation decides with the trained network: another share staying home than the seeded one
    shares = []
    for extra in ([], [f"model.behavior.neural.weights={trained}"]):
        cfg = compose_config(["behavior=neural", "population.num_people=400", "steps=6", "progress=false",
                              "model.params.seir.initial_infected=3",
                              "task.plot=false", *extra])
        simulate(cfg, tmp_path / str(len(extra)))
        shares.append(pd.read_parquet(tmp_path / str(len(extra)) / "trajectory.parquet")["stays_home"])
    assert not shares[0].equals(shares[1])


def test_weights_that_do_not_fit_are_refused_naming_why(trained, tmp_path):
    w = f"model.behavior.neural.weights={trained}"
    with pytest.raises(ConfigError, match=r"no network the run trained has this one's weights .*configure the same "
                                          r"network \(net\)"):
        _neural([w, "model.behavior.neural.net.hidden=4"])
    with pytest.raises(ConfigError, match=r"process 'neural' of that run was trained with other settings "
                                          r"\(input_scale: \[10\.0, 10\.0, 10\.0\] there, \[5\.0, 5\.0, 5\.0\] here\)"):
        _neural([w, "model.behavior.neural.input_scale=5.0"])
    with pytest.raises(ConfigError, match=r"weights_from='rules', but the run trained the weights of \['neural'\]"):
        _neural([w, "model.behavior.neural.weights_from=rules"])
    tampered = tmp_path / "checkpoint.pt"
    raw = bytearray((trained / "checkpoint.pt").read_bytes())
    raw[-100] ^= 1
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="NeuralBehavior.weights: checkpoint .* was modified or corrupted"):
        _neural([f"model.behavior.neural.weights={tampered}"])
