r"""The labour market: separations at a rate, vacancies from sales, Cobb-Douglas matching per firm.

Every person :math:`i` with a ``('person', 'member_of', 'workplace')`` edge
is in the labour force, attached to that one firm :math:`f(i)` (the firm they
work at when employed and where they look for work when not: an *island*
labour market, one per firm).  Employment :math:`e_i \in \{0, 1\}` (a
probability in expected mode) is the indicator state ``person.employed``,
owned by :class:`LabourMarket`.  Per firm, from the state at the start of the
step (:math:`A` the person → firm membership layout, :math:`n_f` the firm's
attached workforce):

.. math::

    E_f = (A e)_f, \qquad U_f = n_f - E_f, \qquad
    L^*_f = o_f \min\big(n_f,\ (1 + \mu)\, \ell_f\big)

with :math:`\ell_f` the workforce the firm's last sales needed
(``workplace.labour_demand``, from :class:`~lpm_graph.models.economy.GoodsMarket`),
:math:`\mu` the hiring margin and :math:`o_f` the operating factor
(``workplace.operating``, 1 unless :class:`~lpm_graph.models.economy.FirmClosure`
closes the firm).  After exogenous separations at rate :math:`s` the firm
keeps :math:`(1 - s) E_f` and wants :math:`g_f = L^*_f - (1 - s)E_f` more:

.. math::

    V_f = \max(0, g_f), \qquad
    \lambda_f = \min\Big(1, \frac{\max(0, -g_f)}{(1 - s) E_f}\Big), \qquad
    q_f = s + (1 - s)\,\lambda_f

(vacancies, the layoff share of the kept workers, the separation probability
of an employee).  Matches follow the Cobb-Douglas matching function
:math:`m = \mathcal{A}\, U^{\alpha} V^{1-\alpha}` (Pissarides, *Equilibrium
Unemployment Theory*, 2000; Petrongolo and Pissarides, *J. Econ. Lit.* 2001,
for the estimates :math:`\alpha \approx 0.5`–0.7), capped so that no firm
fills more jobs than it posts or has unemployed:

.. math::

    h_f = \min\Big(1,\ \frac{V_f}{U_f},\ \mathcal{A}\,\Big(\frac{V_f}{U_f}\Big)^{1-\alpha}\Big)
    \quad (U_f > 0;\ 0 \text{ otherwise})

is the hiring probability of each unemployed member.  The probabilities reach
the people along ``('workplace', 'rev_member_of', 'person')``, and

.. math::

    e_i' = e_i - e_i\, \mathbb{1}[u^{\mathrm{sep}}_i < q_{f(i)}]
               + (1 - e_i)\, \mathbb{1}[u^{\mathrm{hire}}_i < h_{f(i)}]

with counter-based uniforms of the streams ``separation`` and ``hiring``
(:class:`~lpm_graph.core.sampling.Sampler`: surrogate gradients in
stochastic mode; the probabilities themselves in expected mode).  Events
``person.separations`` and ``person.hires``; the economy-wide unemployment
rate :math:`u = \sum_i (1 - e_i') \,/\, \sum_f n_f` over the labour force is
held by every firm alike (``workplace.unemployment_rate``, a mean
observable), as the core's state is per node.
"""
from __future__ import annotations

import weakref

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.observe import Observable, Outcome
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import EventSpec, Read, StateSpec
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn import SparseAdjacency
from lpm_graph.nn.sparse import spmm

__all__ = ["LabourMarket", "MembershipProcess", "workforce", "check_membership", "MEMBER_OF", "REV_MEMBER_OF"]

MEMBER_OF = "member_of"
REV_MEMBER_OF = "rev_member_of"

#: membership layout -> dtype -> (labour force indicator [N_person, 1], attached workforce [N_firm, 1])
_WORKFORCE: "weakref.WeakKeyDictionary[SparseAdjacency, dict]" = weakref.WeakKeyDictionary()


def workforce(graph, person: str, firm: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(lf, n)``: ``[N_person, 1]`` 1.0 for the people attached to a firm (along the reverse edges), and
    ``[N_firm, 1]`` each firm's attached workforce (along the membership edges); computed once per graph."""
    adj = graph.layout((person, MEMBER_OF, firm))
    cache = _WORKFORCE.setdefault(adj, {})
    if dtype not in cache:
        rev = graph.layout((firm, REV_MEMBER_OF, person))
        ones_p = torch.ones(adj.shape[1], 1, dtype=dtype, device=graph.device)
        ones_f = torch.ones(adj.shape[0], 1, dtype=dtype, device=graph.device)
        cache[dtype] = (spmm(rev, ones_f), spmm(adj, ones_p))
    return cache[dtype]


def check_membership(graph, person: str, firm: str, who: str) -> None:
    """Every person has at most one firm, and the reverse edges are exactly the membership edges flipped."""
    adj = graph.layout((person, MEMBER_OF, firm))
    rev = graph.layout((firm, REV_MEMBER_OF, person))
    ones_p = torch.ones(adj.shape[1], 1, dtype=torch.float64, device=graph.device)
    ones_f = torch.ones(adj.shape[0], 1, dtype=torch.float64, device=graph.device)
    per_person = adj.to(dtype=torch.float64).T.matmul(ones_f)
    if per_person.numel() and float(per_person.max()) > 1:
        bad = int((per_person.squeeze(1) > 1).nonzero()[0])
        raise PopulationGraphError(f"{who}: {person} node {bad} is a member of {int(per_person[bad])} {firm} nodes; "
                                   f"the labour market attaches each person to at most one {firm}")
    if adj.num_edges != rev.num_edges or not torch.equal(rev.to(dtype=torch.float64).matmul(ones_f), per_person) \
            or not torch.equal(rev.to(dtype=torch.float64).T.matmul(ones_p), adj.to(dtype=torch.float64).matmul(ones_p)):
        raise PopulationGraphError(f"{who}: the edges ({firm!r}, {REV_MEMBER_OF!r}, {person!r}) must be the "
                                   f"({person!r}, {MEMBER_OF!r}, {firm!r}) edges flipped ({rev.num_edges} and "
                                   f"{adj.num_edges} edges): wages and hiring reach people along them")
    if adj.shape[0] == 0:
        raise PopulationGraphError(f"{who}: the population has no {firm} nodes, so no firms")


def _rate(adj_rev, per_firm: Tensor) -> Tensor:
    """A per-firm value at each person along the reverse edges (0 outside the labour force)."""
    return spmm(adj_rev, per_firm)


class MembershipProcess(Process):
    """A process of people attached to firms: the edges ``(person, member_of, firm)`` and their reverse,
    required and checked (:func:`check_membership`), shared by the labour and the goods market.

    Args:
        firm (str): the firm node type. (default: ``"workplace"``)
        grouping (str, optional): a grouping of people for grouped observables. (default: ``None``)
        name (str): the process name and parameter namespace.
    """

    def __init__(self, firm: str = "workplace", grouping: str | None = None, name: str | None = None):
        super().__init__(name)
        if not isinstance(firm, str) or not firm or "." in firm:
            raise ConfigError(f"{type(self).__name__} ({self.name}).firm must be a node type, got {firm!r}")
        self.firm, self.person, self.grouping = firm, "person", grouping

    @property
    def edge_types(self):
        """``[(person, member_of, firm), (firm, rev_member_of, person)]``: what reaches firms, what reaches people."""
        return [(self.person, MEMBER_OF, self.firm), (self.firm, REV_MEMBER_OF, self.person)]

    def requirements(self) -> Requirements:
        return Requirements(edge_types=set(self.edge_types))

    def check_graph(self, graph) -> None:
        check_membership(graph, self.person, self.firm, f"{type(self).__name__} ({self.name})")


class LabourMarket(MembershipProcess):
    r"""Separations, layoffs and Cobb-Douglas matching of the unemployed to vacancies (module docstring).

    Args:
        firm (str): the firm node type (membership edges ``(person, member_of, firm)`` and their
            reverse). (default: ``"workplace"``)
        grouping (str, optional): a grouping of people for grouped observables of employment.
            (default: ``None``)
        name (str): the process name and parameter namespace. (default: ``"labour"``)

    Parameters (``model.params.<name>``): ``separation_rate`` :math:`s`,
    ``matching_efficiency`` :math:`\mathcal{A}`, ``matching_elasticity``
    :math:`\alpha`, ``hiring_margin`` :math:`\mu`, ``initial_unemployment``
    (each member of the labour force starts unemployed with this probability,
    stream ``initial_employment`` at step -1; in expected mode :math:`e_i(0) = 1 - u_0`).
    """

    role = "update"
    default_name = "labour"

    def __init__(self, firm: str = "workplace", grouping: str | None = None, name: str | None = None):
        super().__init__(firm, grouping, name)
        self.employed = f"{self.person}.employed"
        self.rate = f"{firm}.unemployment_rate"

    def state_specs(self):
        return [StateSpec(self.person, "employed", "indicator", init=None, unit="people", doc="employed"),
                StateSpec(self.firm, "unemployment_rate", "continuous", init=None, unit="share of the labour force",
                          doc="economy-wide unemployment rate (the same at every firm)")]

    def event_specs(self):
        return [EventSpec(self.person, "separations", "people", "employees who lost or left their job"),
                EventSpec(self.person, "hires", "people", "unemployed people hired")]

    def param_specs(self):
        return [ParamSpec("separation_rate", "probability", default=0.03, unit="1/step",
                          doc="probability per step that an employee leaves (s)"),
                ParamSpec("matching_efficiency", "nonnegative", default=0.4, unit="1/step",
                          doc="A of the matching function m = A U^a V^(1-a)"),
                ParamSpec("matching_elasticity", "probability", default=0.5, unit="",
                          doc="a, the elasticity of matches in unemployment"),
                ParamSpec("hiring_margin", "nonnegative", default=0.1, unit="share",
                          doc="mu: firms seek (1 + mu) times the workforce their last sales needed"),
                ParamSpec("initial_unemployment", "probability", default=0.1, unit="share",
                          doc="probability that a member of the labour force starts unemployed")]

    def reads(self):
        return [self.employed, f"{self.firm}.labour_demand", Read(f"{self.firm}.operating", optional=True, default=1.0)]

    def streams(self):
        return [(self.person, self.stream(s)) for s in ("initial_employment", "separation", "hiring")]

    def workspace(self):
        return {self.person: 6.0, self.firm: 12.0}

    def observables(self):
        by = (self.grouping,) if self.grouping else ()
        return [Observable("unemployment_rate", self.rate, "mean", panel="unemployment rate",
                           unit="share of the labour force", doc="unemployed / labour force"),
                Observable("employed", self.employed, "count", by=by, panel="employment", unit="people"),
                Observable("hires", f"{self.person}.hires", "sum", panel="labour flows", style="bar",
                           unit="people per step"),
                Observable("separations", f"{self.person}.separations", "sum", panel="labour flows", style="bar",
                           unit="people per step")]

    def outcomes(self):
        return [Outcome("mean_unemployment", "unemployment_rate", "mean", unit="share",
                        doc="mean over steps 0..T of the unemployment rate"),
                Outcome("final_unemployment", "unemployment_rate", "final", unit="share",
                        doc="unemployment rate at the last step")]

    # -- running -------------------------------------------------------------
    def _rate_state(self, ctx: StepContext, e: Tensor, lf: Tensor) -> Tensor:
        total = lf.sum()
        u = (lf - e).sum(0, keepdim=True) / total.clamp_min(1.0)
        return u.expand(ctx.graph.num_nodes[self.firm], -1)

    def init(self, ctx: StepContext) -> Output:
        lf, _ = workforce(ctx.graph, self.person, self.firm, ctx.dtype)
        u0 = self.value(ctx, "initial_unemployment").to(ctx.dtype)
        n = ctx.graph.num_nodes[self.person]
        u = ctx.rng(self.person).uniform(-1, self.stream("initial_employment"), ctx.dtype) if ctx.stochastic else None
        unemployed = ctx.sampler(u0.expand(n, ctx.replicates), u)
        e = lf * (1.0 - unemployed)
        return Output(state={self.employed: e, self.rate: self._rate_state(ctx, e, lf)})

    def probabilities(self, ctx: StepContext, e: Tensor, labour_demand: Tensor, operating) -> tuple[Tensor, ...]:
        """Per firm ``[N_firm, R]``: separation probability ``q``, hiring probability ``h``, vacancies ``V``,
        unemployed ``U`` (module docstring)."""
        graph = ctx.graph
        lf, n = workforce(graph, self.person, self.firm, e.dtype)
        s = self.value(ctx, "separation_rate").to(e.dtype)
        A = self.value(ctx, "matching_efficiency").to(e.dtype)
        a = self.value(ctx, "matching_elasticity").to(e.dtype)
        mu = self.value(ctx, "hiring_margin").to(e.dtype)
        E = spmm(graph.layout(self.edge_types[0]), e)
        U = (n - E).clamp_min(0.0)
        target = torch.minimum(n, (1.0 + mu) * labour_demand)
        if not (isinstance(operating, (int, float)) and operating == 1):
            target = target * operating
        keep = (1.0 - s) * E
        gap = target - keep
        V = gap.clamp_min(0.0)
        has_keep = keep > 0
        layoff = torch.where(has_keep, (-gap).clamp_min(0.0) / torch.where(has_keep, keep, 1.0), 0.0).clamp(max=1.0)
        q = s + (1.0 - s) * layoff
        has_u = U > 0
        ratio = torch.where(has_u, V / torch.where(has_u, U, 1.0), 0.0)
        positive = ratio > 0
        matched = A * torch.where(positive, ratio, 1.0) ** (1.0 - a)  # double where: no NaN gradient at V = 0
        h = torch.where(positive, torch.minimum(torch.minimum(matched, ratio), torch.ones_like(ratio)), 0.0)
        return q, h, V, U

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        e = state[self.employed]
        lf, _ = workforce(ctx.graph, self.person, self.firm, e.dtype)
        q, h, _, _ = self.probabilities(ctx, e, state[f"{self.firm}.labour_demand"],
                                        fields.get(f"{self.firm}.operating", 1.0))
        rev = ctx.graph.layout(self.edge_types[1])
        q_i, h_i = _rate(rev, q), _rate(rev, h)
        u_sep = u_hire = j_sep = j_hire = None
        if ctx.stochastic:
            rng = ctx.rng(self.person)
            u_sep, j_sep = rng.uniform_refined(ctx.t, self.stream("separation"), e.dtype)
            u_hire, j_hire = rng.uniform_refined(ctx.t, self.stream("hiring"), e.dtype)
        separated = e * ctx.sampler(q_i.expand_as(e), u_sep, j_sep)
        hired = (lf - e) * ctx.sampler(h_i.expand_as(e), u_hire, j_hire)
        e_new = e - separated + hired
        return Output(state={self.employed: e_new, self.rate: self._rate_state(ctx, e_new, lf)},
                      events={f"{self.person}.separations": separated, f"{self.person}.hires": hired})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, firm={self.firm!r}"
