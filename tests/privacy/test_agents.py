"""Private agents in the venue epidemic: the same trajectory as in the clear up to the quantisation, sums of at
least k contributors only, released totals, the refuse/merge rule, dropouts, noise and its accounting."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lpm_graph.errors import ConfigError
from lpm_graph.privacy import agents as agents_mod
from lpm_graph.privacy.agents import PrivateModel, aggregation_groups
from lpm_graph.privacy.dp import epsilon_from_rho
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import CONF_DIR, compose_config
from tests.privacy.populations import blocks

COMPARTMENTS = ("S", "E", "I", "R")


def seir_config(mode: str, **privacy):
    cfg = OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/model/seir.yaml"))
    cfg["mode"] = mode
    cfg["params"]["seir"]["initial_infected_fraction"] = 0.15
    if privacy:
        cfg["_target_"] = "lpm_graph.privacy.agents.PrivateModel"
        cfg["privacy"] = {"_target_": "lpm_graph.privacy.agents.PrivateAgents", **privacy}
    return cfg


def build(mode: str, dtype=torch.float64, **privacy):
    return instantiate_config(seir_config(mode, **privacy), dtype=dtype)


def forces(model):
    """Record the force of infection the transmission writes, per step."""
    seen = []
    model.process("transmission").register_forward_hook(
        lambda module, args, out: seen.append(out.fields["person.force_of_infection"].detach().clone()))
    return seen


@pytest.fixture
def recorded_sums(monkeypatch):
    """Every call of the secure sum: its number of inputs and its min_clients."""
    from lpm_graph.privacy import secagg

    calls = []
    original = secagg.secure_sum

    def recording(inputs, **kwargs):
        calls.append((len(inputs), kwargs["min_clients"]))
        return original(inputs, **kwargs)

    monkeypatch.setattr(secagg, "secure_sum", recording)
    return calls


def test_expected_mode_matches_clear_run_within_the_quantisation_bound(recorded_sums):
    data = blocks()
    clear, private = build("expected"), build("expected", attribute="private", small_groups="refuse")
    f_clear, f_private = forces(clear), forces(private)
    a = clear(data, steps=8, seed=1)
    b = private(data, steps=8, seed=1)
    # step 0 starts from the same state: the force differs by the quantisation of the private sums alone
    bound = private.privacy.force_bound(_ctx(private, data))
    err = (f_private[0] - f_clear[0]).abs().max(1).values
    assert bool((err <= bound + 1e-15 * f_clear[0].abs().max()).all()), (err.max(), bound.max())
    assert float(bound.max()) < 1e-8 and float(f_clear[0].max()) > 0.01
    assert float(err.max()) > 0  # the private sums did go through the fixed-point encoding
    diff = max(float((a.series[c] - b.series[c]).abs().max()) for c in COMPARTMENTS)
    # over 8 steps: a few force bounds per person and step, summed over 60 people (measured ~1e-9)
    assert diff < 60 * 8 * 10 * float(bound.max())
    # two rounds a step (contributions, totals) and the initial totals; none with fewer than k inputs
    assert len(recorded_sums) == 2 * 8 + 1
    assert all(n >= k == 3 for n, k in recorded_sums) and {n for n, _ in recorded_sums} == {6}
    # coarser encoding, larger difference: the difference is the quantisation's
    coarse = build("expected", attribute="private", small_groups="refuse", frac_bits=12)(data, steps=8, seed=1)
    diff12 = max(float((a.series[c] - coarse.series[c]).abs().max()) for c in COMPARTMENTS)
    assert diff12 > 1000 * diff


def _ctx(model, data):
    from lpm_graph.core.process import StepContext

    graph = model.prepare(data)
    return StepContext(0, graph, model.params.at(0, model.params.as_dict()), model.sampler, model.dt, 1,
                       torch.float64, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stochastic_mode_gives_the_clear_run_compartment_counts(dtype):
    data = blocks()
    rows = data["person"].private.nonzero().flatten()
    data["person"].age[rows] = torch.tensor([5.0, 5.0, 5.0, 45.0, 45.0, 45.0])  # two age groups of three
    clear, private = build("stochastic", dtype), build("stochastic", dtype, attribute="private",
                                                       small_groups="refuse")
    a = clear(data, steps=12, seed=4, replicates=4)
    b = private(data, steps=12, seed=4, replicates=4)
    assert float(a.series["new_infections"][1:].sum()) > 10  # an epidemic happened
    for name in (*COMPARTMENTS, "new_infections"):
        assert torch.allclose(a.series[name], b.series[name], atol=1e-4, rtol=0), name
    # released by age group (each with three private agents): the grouped series are the clear run's too
    assert torch.allclose(a.grouped["age"]["new_infections"], b.grouped["age"]["new_infections"], atol=1e-4, rtol=0)
    assert private.privacy.report()["release_groups"] == ["age 0-10", "age 40-50"]
    # the simulator's rows of the private agents hold the released totals, spread: one value per group and replicate
    for c in COMPARTMENTS:
        for held in (b.final_state[f"person.{c}"][rows[:3]], b.final_state[f"person.{c}"][rows[3:]]):
            assert torch.equal(held, held[:1].expand_as(held)), c
    # and their own states are not the simulator's: someone's compartment differs from the spread value
    assert not torch.equal(b.final_state["person.I"][rows], a.final_state["person.I"][rows])


def test_clients_draw_with_their_uid_not_their_row():
    data = blocks()
    moved = blocks()
    moved["person"].uid = moved["person"].uid.flip(0)  # same rows, other uids: other draws for everyone
    a = build("stochastic", attribute="private", small_groups="refuse")(data, steps=12, seed=4, replicates=4)
    b = build("stochastic")(moved, steps=12, seed=4, replicates=4)
    assert not torch.equal(a.series["new_infections"], b.series["new_infections"])


def test_small_venues_refused_or_merged():
    data = blocks()
    data["person"].private = torch.zeros(60, dtype=torch.bool)
    data["person"].private[[0, 1, 2, 3, 4, 5, 6]] = True  # household 2 has one private member
    with pytest.raises(ConfigError, match=r"small_groups=refuse.*'household': 1"):
        build("expected", attribute="private", small_groups="refuse")(data, steps=1)
    model = build("expected", attribute="private", small_groups="merge")
    model(data, steps=2)
    report = model.privacy.report()
    # household 2 ({6}) and school 1 ({3, 4}) are the only small venues of their types (too few to form a group:
    # they join another type's), workplaces 0 ({1, 2}) and 1 ({4, 5}) form one merged group
    assert report["merged_venues"] == {"household": 1, "school": 1, "workplace": 2}
    assert report["groups"] == 5  # households 0 and 1, school 0 ({0, 1, 6}), the community, the merged one
    assert report["contributors_per_round"]["min"] == 7


def test_merge_groups_have_k_distinct_contributors_and_conserve_the_sum():
    # rows: venue 0..4 of type 0 with private members {a}, {b}, {a}, {c, d}, {e, f, g, h, i}; venue 5 of type 1: {j}
    rows = np.array([0, 1, 2, 3, 3, 4, 4, 4, 4, 4, 5])
    members = np.array([1, 2, 1, 3, 4, 5, 6, 7, 8, 9, 10])
    weights = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1, 1, 1, 1, 1, 1.0])
    g = aggregation_groups(rows, members, weights, np.array([0, 0, 0, 0, 0, 1]), ["a", "b"], 6, 3, "merge")
    assert g.of_row[4] != g.of_row[0] and g.size[g.of_row[4]] == 5
    assert (g.size >= 3).all() and (g.of_row >= 0).all()
    # venues 0, 1, 2 hold only two distinct people (a counted once): the group closes at venue 3
    assert g.of_row[0] == g.of_row[1] == g.of_row[2] == g.of_row[3]
    assert g.of_row[5] == g.of_row[0]  # type b's lone venue joins the last merged group
    for k in range(g.count):
        assert g.share[g.of_row == k].sum() == pytest.approx(1.0)
    # shares follow the private membership weight: venue 1 (weight 2) twice venue 0's
    assert g.share[1] == pytest.approx(2 * g.share[0])
    with pytest.raises(ConfigError, match="fewer than 3 private agents in all"):
        aggregation_groups(np.array([0, 1]), np.array([1, 2]), np.ones(2), np.array([0, 0]), ["a"], 2, 3, "merge")


def test_dropouts_counted_and_small_groups_withheld():
    data = blocks(private_households=(0, 2, 4, 6))
    model = build("stochastic", attribute="private", small_groups="refuse", dropout=0.25)
    model(data, steps=4, seed=2, replicates=2)
    r = model.privacy.report()
    trials = 12 * r["rounds"]
    sd = math.sqrt(trials * 0.25 * 0.75)
    assert abs(r["dropouts"] - 0.25 * trials) < 4.5 * sd
    # households have 3 private members: one offline withholds its household's entry (one per replicate)
    assert r["contributors_per_round"]["min"] < 12 and r["withheld_group_entries"] > 0
    assert r["contributors_per_round"]["min"] >= 3


@pytest.mark.parametrize("noise_on", ["released", "all"])
def test_noise_and_its_privacy_accounting(noise_on):
    data = blocks()
    clear = build("expected")
    f_clear = forces(clear)
    a = clear(data, steps=3)
    model = build("expected", attribute="private", small_groups="refuse", noise_multiplier=1.5, clip=1.0,
                  noise_on=noise_on)
    f_private = forces(model)
    traj = model(data, steps=3)
    dp = model.privacy.report()["differential_privacy"]
    releases = 3 + 1 if noise_on == "released" else 2 * 3 + 1
    assert dp["releases"] == releases and dp["noise_on"] == noise_on
    assert dp["rho"] == pytest.approx(releases / (2 * 1.5 ** 2), rel=1e-12)
    assert dp["epsilon"] == pytest.approx(epsilon_from_rho(releases / (2 * 1.5 ** 2), 1e-6))
    # the released totals are noisy: the private share of I is not the clear one (noise sd 1.5 sqrt(7) per total)
    assert not torch.allclose(traj.series["I"], a.series["I"], atol=1e-3)
    # noise on the released totals alone leaves the dynamics as in the clear (up to the 2^-32 quantisation);
    # on the venue sums too, it moves the force of infection
    moved = float((f_private[1] - f_clear[1]).abs().max())
    assert (moved < 60 * 2.0 ** -32) == (noise_on == "released"), moved
    model(data, steps=3)  # a second run spends as much again
    assert model.privacy.report()["differential_privacy"]["releases"] == 2 * releases


def test_refusals():
    with pytest.raises(ConfigError, match="min_group must be an integer of at least 3"):
        build("expected", attribute="private", min_group=2)
    with pytest.raises(ConfigError, match="exactly one of privacy.private_fraction"):
        build("expected", attribute="private", fraction=0.1)
    with pytest.raises(ConfigError, match="fewer than privacy.min_group=3"):
        build("expected", fraction=0.0)(blocks(), steps=1)
    with pytest.raises(ConfigError, match="privacy.clip=8: a private agent's value 9 exceeds"):
        cfg = seir_config("expected", attribute="private", small_groups="refuse")
        cfg["params"]["infectiousness"]["relative"] = 9.0
        cfg["params"]["seir"]["initial_infected_fraction"] = 1.0
        instantiate_config(cfg, dtype=torch.float64)(blocks(), steps=2)
    # a behaviour that reads the private agents' own state
    cfg = compose_config(["privacy=agents", "behavior=rules"])
    with pytest.raises(ConfigError, match="reads .*person.I.*own state"):
        instantiate_config(cfg.model)
    cfg = compose_config(["privacy=agents", "model=contact"])
    with pytest.raises(ConfigError, match="exactly one VenueTransmission"):
        instantiate_config(cfg.model)


def test_cli_config_marks_a_fraction_private_and_reports(tmp_path):
    from lpm_graph.tasks.simulate import simulate

    cfg = compose_config(["privacy=agents", "population.num_people=400", "privacy.private_fraction=0.05",
                          "privacy.min_group=4", "steps=4", "progress=false", "task.plot=false",
                          "model.params.seir.initial_infected_fraction=0.02"])
    assert isinstance(instantiate_config(cfg.model), PrivateModel)
    metrics = simulate(cfg, tmp_path)
    report = metrics["processes"]["seir"]["privacy"]
    n = report["private_agents"]
    assert abs(n - 20) < 4.5 * math.sqrt(400 * 0.05 * 0.95) and report["min_group"] == 4
    assert report["rounds"] == 2 * 4 + 1 and report["contributors_per_round"]["min"] == n
    assert report["groups"] > 0 and report["payload_bytes_per_agent_per_step"] > 0
    assert agents_mod.SMALL_GROUPS == ("refuse", "merge")


def test_checkpointed_gradient_replays_the_released_sums():
    """A checkpointed step recomputed in the backward pass reuses its rounds: the same gradient as without
    checkpointing, and no round run twice."""
    data = blocks()
    grads, rounds = [], []
    for checkpoint in (False, True):
        cfg = seir_config("expected", attribute="private", small_groups="refuse")
        cfg.update(checkpoint=checkpoint, learnable=["transmission.beta_community"])
        model = instantiate_config(cfg, dtype=torch.float64)
        traj = model(data, steps=5)
        traj.series["new_infections"].sum().backward()
        grads.append(model.params.raw("transmission.beta_community").grad.clone())
        rounds.append(model.privacy.report()["rounds"])
    assert rounds == [11, 11]
    assert torch.allclose(grads[0], grads[1], rtol=1e-12) and float(grads[0].abs()) > 0


def test_merged_groups_share_their_sum_by_private_membership():
    """Step 0 of the expected mode: every person emits 0.15 (the seeding probability), so a venue's private sum
    is 0.15 times its private members; a merged group's venues share the group's sum by their private members,
    and the sum over the group is kept."""
    data = blocks()
    data["person"].private = torch.zeros(60, dtype=torch.bool)
    data["person"].private[[0, 1, 2, 3, 4, 5, 6]] = True
    model = build("expected", attribute="private", small_groups="merge")
    model(data, steps=1)
    run = model.privacy.run
    per_row = run._sums[0][:, 0].double().numpy()
    stack = run.stack
    private = data["person"].private.double()
    members = torch.sparse.mm(stack.adjacency.csr.to(torch.float64), private.unsqueeze(1)).squeeze(1).numpy()
    exact = 0.15 * members
    groups = run.groups
    assert (per_row[groups.of_row < 0] == 0).all() and (members[groups.of_row < 0] == 0).all()
    for g in range(groups.count):
        rows = groups.of_row == g
        assert per_row[rows].sum() == pytest.approx(exact[rows].sum(), abs=1e-8)
        assert per_row[rows] == pytest.approx(exact[rows].sum() * members[rows] / members[rows].sum(), abs=1e-8)
    own = np.isin(groups.of_row, np.nonzero(groups.size >= 3)[0]) & (members >= 3)
    assert own.sum() == 4 and per_row[own] == pytest.approx(exact[own], abs=1e-8)  # unmerged venues: their own sum


def test_grouped_release_off_releases_one_total():
    data = blocks()
    rows = data["person"].private.nonzero().flatten()
    data["person"].age[rows] = torch.tensor([5.0, 5.0, 5.0, 45.0, 45.0, 45.0])
    model = build("stochastic", attribute="private", small_groups="refuse", grouped_release=False)
    traj = model(data, steps=3, seed=4, replicates=2)
    assert model.privacy.report()["release_groups"] == ["all"]
    held = traj.final_state["person.S"][rows]
    assert torch.equal(held, held[:1].expand_as(held))  # one value for all six private rows
