r"""Production, wages, dividends, household consumption and one goods market, in money and goods.

:class:`GoodsMarket` owns the stocks of the economy — money of people
(``person.savings``, :math:`m_i`) and of firms (``workplace.money``,
:math:`M_f`), firms' inventories (``workplace.inventory``, :math:`S_f`) —
and the flows of the step that just ended (income, consumption, output,
demand).  One step, with the employment :math:`e'` the labour market has
just set and the price level :math:`p` of this step
(:class:`~lpm_graph.models.economy.PriceLevel`):

.. math::

    E_f &= (A e')_f, \quad Y_f = z E_f
        && \text{output (productivity } z) \\
    \omega_i &= e'_i \,(A_{\mathrm{rev}}\, w)_i, \quad W_f = w E_f
        && \text{wages, firm} \to \text{person along rev\_member\_of} \\
    \delta_f &= \delta \max(M_f, 0), \quad d = \tfrac{1}{N}\sum_f \delta_f
        && \text{dividends, an equal share to everyone} \\
    y_i &= \omega_i + d, \quad
    \tilde x_i = \min\big(y_i + m_i,\ \sigma(t)\, s_i\,(c_y y_i + c_m m_i)\big)
        && \text{income, desired spending} \\
    D &= \sum_i \tilde x_i / p, \quad
    D_f = D\,\frac{o_f n_f}{\sum_g o_g n_g}
        && \text{real demand, shared by operating capacity} \\
    \text{sold}_f &= \min(D_f,\ S_f + Y_f), \quad
    \rho = \frac{\sum_f \text{sold}_f}{D}
        && \text{sales; the share of demand served} \\
    c_i &= \rho\,\tilde x_i / p, \quad x_i = p\, c_i
        && \text{consumption (goods), spending (money)}

and the stocks move by

.. math::

    m_i' = m_i + y_i - x_i, \qquad
    M_f' = M_f - W_f - \delta_f + p\,\text{sold}_f, \qquad
    S_f' = S_f + Y_f - \text{sold}_f .

:math:`\sigma(t)` is the field ``person.spending_scale`` (1 unless an
environment process such as :class:`lpm_graph.core.Scale` writes it: a
demand shock), :math:`s_i` the decision ``person.spends`` of a behaviour
(the share of its planned spending a person spends this step, 1 without a
behaviour deciding it; ``docs/behavior.md``), :math:`o_f` the field
``workplace.operating``.  Households
spend out of income and wealth with propensities :math:`c_y, c_m \in [0, 1]`,
so no one spends more than they hold.  Goods go through one market
(a uniform goods market: every household buys from every firm in proportion
to the firms' operating capacity; demand a firm cannot serve is not spent).

**Accounting identities** (exact in real arithmetic, to rounding in floats):
the money of a closed economy is constant,
:math:`\sum_i m_i' + \sum_f M_f' = \sum_i m_i + \sum_f M_f`, since every
payment has a payer and a payee (wages: :math:`\sum_i \omega_i = \sum_f W_f`
because the reverse edges are the membership edges flipped; dividends;
spending :math:`\sum_i x_i = p \sum_f \text{sold}_f`); and goods produced are
consumed or stored, :math:`\sum_f Y_f = \sum_i c_i + \sum_f (S_f' - S_f)`.

Firms record the workforce last step's demand needed,
``workplace.labour_demand`` :math:`= D_f / z`, which the labour market reads
at the next step, and the demand and output the price level reads.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lpm_graph.core.observe import Observable, Outcome
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, StepContext
from lpm_graph.core.state import Read, StateSpec
from lpm_graph.models.economy.labour import MembershipProcess, workforce
from lpm_graph.nn.sparse import spmm

__all__ = ["GoodsMarket"]


class GoodsMarket(MembershipProcess):
    r"""Production, wages, dividends, consumption and the goods market (module docstring).

    Args:
        firm (str): the firm node type. (default: ``"workplace"``)
        grouping (str, optional): a grouping of people (``model.groupings``) for savings,
            income and consumption by group. (default: ``None``)
        name (str): the process name and parameter namespace. (default: ``"market"``)

    Parameters (``model.params.<name>``): ``wage`` :math:`w`, ``productivity``
    :math:`z`, ``propensity_income`` :math:`c_y`, ``propensity_wealth``
    :math:`c_m`, ``payout`` :math:`\delta`, ``initial_savings`` (every person's
    money at step 0; firms start with none and no inventory, expecting demand
    for their whole workforce, :math:`D_f(0) = z n_f`).
    """

    role = "update"
    default_name = "market"

    def k(self, node_type: str, name: str) -> str:
        return f"{node_type}.{name}"

    # -- declarations --------------------------------------------------------
    def state_specs(self):
        p, f = self.person, self.firm
        return [StateSpec(p, "savings", "continuous", init=None, unit="money", doc="money held by the person"),
                StateSpec(p, "income", "continuous", init=0.0, unit="money per step", doc="wage and dividend"),
                StateSpec(p, "consumption", "continuous", init=0.0, unit="goods per step", doc="goods bought"),
                StateSpec(f, "money", "continuous", init=0.0, unit="money", doc="money held by the firm"),
                StateSpec(f, "inventory", "continuous", init=0.0, unit="goods", doc="goods in stock"),
                StateSpec(f, "output", "continuous", init=0.0, unit="goods per step", doc="goods produced"),
                StateSpec(f, "demand", "continuous", init=None, unit="goods per step", doc="real demand for its goods"),
                StateSpec(f, "labour_demand", "continuous", init=None, unit="workers",
                          doc="workforce the last demand needed, D_f / z")]

    def param_specs(self):
        return [ParamSpec("wage", "nonnegative", default=1.0, unit="money per worker per step", doc="wage w"),
                ParamSpec("productivity", "positive", default=1.0, unit="goods per worker per step",
                          doc="output per employed worker z"),
                ParamSpec("propensity_income", "probability", default=0.8, unit="share",
                          doc="share of income spent c_y"),
                ParamSpec("propensity_wealth", "probability", default=0.05, unit="share per step",
                          doc="share of savings spent per step c_m"),
                ParamSpec("payout", "probability", default=0.2, unit="share per step",
                          doc="share of a firm's positive money paid out as dividends per step"),
                ParamSpec("initial_savings", "nonnegative", default=1.6, unit="money", doc="money per person at step 0")]

    def reads(self):
        p, f = self.person, self.firm
        return [f"{p}.employed", f"{f}.price_level", f"{p}.savings", f"{f}.money", f"{f}.inventory",
                Read(f"{p}.spending_scale", optional=True, default=1.0),
                Read(f"{p}.spends", optional=True, default=1.0),      # a behaviour's decision
                Read(f"{f}.operating", optional=True, default=1.0)]

    def workspace(self):
        return {self.person: 8.0, self.firm: 12.0}

    def observables(self):
        p, f = self.person, self.firm
        by = (self.grouping,) if self.grouping else ()
        return [Observable("output", f"{f}.output", "mean", panel="output per firm", unit="goods per firm per step",
                           doc="mean output of a firm"),
                Observable("consumption", f"{p}.consumption", "mean", by=by, panel="consumption per person",
                           unit="goods per person per step"),
                Observable("income", f"{p}.income", "mean", by=by, panel="income per person",
                           unit="money per person per step"),
                Observable("savings", f"{p}.savings", "mean", by=by, panel="savings per person",
                           unit="money per person"),
                Observable("firm_money", f"{f}.money", "mean", panel="firm money and inventory",
                           unit="money per firm"),
                Observable("inventory", f"{f}.inventory", "mean", panel="firm money and inventory",
                           unit="goods per firm")]

    def outcomes(self):
        return [Outcome("total_output", "output", "total", unit="goods per firm",
                        doc="sum over steps of mean firm output"),
                Outcome("mean_consumption", "consumption", "mean", unit="goods per person per step",
                        doc="mean over steps 0..T of consumption per person"),
                Outcome("final_savings", "savings", "final", unit="money per person",
                        doc="savings per person at the last step")]

    # -- running -------------------------------------------------------------
    def init(self, ctx: StepContext) -> Output:
        n_p, n_f, r = ctx.graph.num_nodes[self.person], ctx.graph.num_nodes[self.firm], ctx.replicates
        _, n = workforce(ctx.graph, self.person, self.firm, ctx.dtype)
        z = self.value(ctx, "productivity").to(ctx.dtype)
        m0 = self.value(ctx, "initial_savings").to(ctx.dtype)

        def zeros(count):
            return torch.zeros(count, r, dtype=ctx.dtype, device=ctx.graph.device)

        p, f = self.person, self.firm
        return Output(state={
            self.k(p, "savings"): m0.expand(n_p, r).clone(), self.k(p, "income"): zeros(n_p),
            self.k(p, "consumption"): zeros(n_p), self.k(f, "money"): zeros(n_f), self.k(f, "inventory"): zeros(n_f),
            self.k(f, "output"): zeros(n_f), self.k(f, "demand"): (z * n).expand(n_f, r).clone(),
            self.k(f, "labour_demand"): n.expand(n_f, r).clone()})

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        p_, f_ = self.person, self.firm
        graph = ctx.graph
        e = state[f"{p_}.employed"]
        dtype = e.dtype
        price = state[f"{f_}.price_level"][:1]              # [1, R]: one price, held by every firm
        m, M, S = state[f"{p_}.savings"], state[f"{f_}.money"], state[f"{f_}.inventory"]
        w = self.value(ctx, "wage").to(dtype)
        z = self.value(ctx, "productivity").to(dtype)
        cy = self.value(ctx, "propensity_income").to(dtype)
        cm = self.value(ctx, "propensity_wealth").to(dtype)
        delta = self.value(ctx, "payout").to(dtype)
        _, n = workforce(graph, p_, f_, dtype)
        n_people = graph.num_nodes[p_]

        E = spmm(graph.layout(self.edge_types[0]), e)       # employed per firm
        Y = z * E
        wage_rate = (w * torch.ones_like(n))                 # [N_firm, 1]: every firm pays w
        wages = e * spmm(graph.layout(self.edge_types[1]), wage_rate)
        W = wage_rate * E
        dividends = delta * M.clamp_min(0.0)
        dividend = dividends.sum(0, keepdim=True) / n_people
        y = wages + dividend
        sigma = fields.get(f"{p_}.spending_scale", 1.0)
        desired = cy * y + cm * m
        if not (isinstance(sigma, (int, float)) and sigma == 1):
            desired = desired * sigma
        spends = fields.get(f"{p_}.spends", 1.0)   # the share of the plan a person spends (behaviour)
        if not (isinstance(spends, (int, float)) and spends == 1):
            desired = desired * spends
        desired = torch.minimum(desired, y + m)
        real = desired / price
        D = real.sum(0, keepdim=True)                       # [1, R]
        operating = fields.get(f"{f_}.operating", 1.0)
        capacity = n if isinstance(operating, (int, float)) and operating == 1 else n * operating
        total_capacity = capacity.sum(0, keepdim=True)
        share = torch.where(total_capacity > 0, capacity / torch.where(total_capacity > 0, total_capacity, 1.0), 0.0)
        D_f = D * share
        available = S + Y
        sold = torch.minimum(D_f, available)
        served = torch.where(D > 0, sold.sum(0, keepdim=True) / torch.where(D > 0, D, 1.0), 0.0)
        c = served * real
        spending = price * c
        return Output(state={
            self.k(p_, "savings"): m + y - spending, self.k(p_, "income"): y, self.k(p_, "consumption"): c,
            self.k(f_, "money"): M - W - dividends + price * sold, self.k(f_, "inventory"): available - sold,
            self.k(f_, "output"): Y.expand_as(M), self.k(f_, "demand"): D_f.expand_as(M),
            self.k(f_, "labour_demand"): (D_f / z).expand_as(M)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, firm={self.firm!r}, grouping={self.grouping!r}"
