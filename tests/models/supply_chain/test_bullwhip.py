r"""The bullwhip effect as theory predicts it (Chen, Drezner, Ryan and Simchi-Levi 2000).

With i.i.d. demand :math:`D`, an order-up-to level :math:`y_t = L\hat\mu_t` from a
:math:`p`-period moving average and unconstrained orders, :math:`q_t = D_{t-1} +
(L/p)(D_{t-1} - D_{t-1-p})`, so

.. math:: \operatorname{Var}(q) / \operatorname{Var}(D) = 1 + 2L/p + 2L^2/p^2

exactly (the lower bound of Chen et al. is attained with :math:`z = 0`).  Demand
Poisson(100) (orders are never near 0, so the ramp never truncates), 16 replicates of
260 measured steps: the ratio per replicate varies by about 0.2; the test allows 4
standard errors of the replicates' mean (about 0.2), while L +- 1 moves the theory by
more than 1.
"""
from __future__ import annotations

import pytest
import torch

from tests.models.supply_chain.helpers import chain_model, line_graph

STEPS, WARMUP, REPLICATES, RATE = 280, 20, 16, 100.0


def theory(L: float, p: int) -> float:
    return 1 + 2 * L / p + 2 * L ** 2 / p ** 2


def _ratios(L: float, p: int, lead: int = 1):
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [lead, 0])
    model = chain_model(["supplier", "retailer", "consumer"],
                        policies={"retailer": {"forecast": True, "window": p}},
                        params={"demand": {"rate": RATE}, "retailer": {"initial_stock": L * RATE},
                                "retailer_policy": {"cover": L, "safety_factor": 0.0, "initial_forecast": RATE}})
    with torch.no_grad():
        traj = model(data, steps=STEPS, seed=11, replicates=REPLICATES)
    q = traj.series["retailer_orders"][WARMUP:]
    d = traj.series["consumer_demand"][WARMUP:]
    assert float(q.min()) > 0  # never truncated at 0: the identity holds
    return q.var(0) / d.var(0)


@pytest.mark.parametrize("L,p", [(2.0, 4), (3.0, 5)])
def test_order_variance_ratio_matches_chen_et_al(L, p):
    r = _ratios(L, p, lead=int(L) - 1)
    mean, se = float(r.mean()), float(r.std() / REPLICATES ** 0.5)
    assert abs(mean - theory(L, p)) < 4 * se, (mean, se, theory(L, p))
    # the test can tell an off-by-one cover (lead time) apart: theory(L +- 1) is far outside the interval
    for other in (L - 1, L + 1):
        assert abs(mean - theory(other, p)) > 10 * se


def test_order_variance_grows_upstream():
    """Three echelons under order-up-to policies: Var(warehouse orders) > Var(retailer orders) > Var(demand)."""
    data = line_graph({"supplier": 1, "warehouse": 1, "retailer": 1, "consumer": 1}, [2, 1, 0])
    model = chain_model(["supplier", "warehouse", "retailer", "consumer"],
                        policies={"warehouse": {"forecast": True, "window": 4},
                                  "retailer": {"forecast": True, "window": 4}},
                        params={"demand": {"rate": RATE},
                                "warehouse": {"initial_stock": 400.0}, "retailer": {"initial_stock": 300.0},
                                "warehouse_policy": {"cover": 3.0, "initial_forecast": RATE},
                                "retailer_policy": {"cover": 2.0, "initial_forecast": RATE}})
    with torch.no_grad():
        traj = model(data, steps=150, seed=4, replicates=8)
    var = {k: traj.series[k][WARMUP:].var(0).mean() for k in ("consumer_demand", "retailer_orders",
                                                                  "warehouse_orders")}
    assert var["warehouse_orders"] > 1.5 * var["retailer_orders"] > 1.5 * 1.5 * var["consumer_demand"]
