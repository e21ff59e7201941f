r"""What an agent can observe: the prevalence in its venues, and announced policies.

:class:`VenuePrevalence` (an interaction) writes, for each venue type
:math:`\tau` it covers, the share of infectious among the members of a
person's venues of that type,

.. math::

    \pi_{i\tau} = \frac{\sum_{v \ni i,\ \tau(v) = \tau} w_{iv}\, m_v}{\sum_{v \ni i,\ \tau(v)=\tau} w_{iv}},
    \qquad m_v = \frac{\sum_{j \in v} w_{jv}\, I_j}{\sum_{j \in v} w_{jv}},

(the person itself among the members; 0 for a person without a venue of the
type): a weighted mean over the venue's members (``WeightedSum`` with
``normalize``) on the same stacked person -> venue layout the venue
transmission reads, then one product back to the members, with one column
block per venue type.  Fields ``person.prevalence_<type>``.
With ``complement`` the share of the members *not* in the state is
observed, :math:`I_j \to 1 - I_j` (the unemployment among one's firm's
workers from ``person.employed``; still 0 for a person without a venue).

:class:`ContactPrevalence` (an interaction) writes the same for explicit
person-person contacts: for each contact relation :math:`r` it covers (one
layer of ``model=contact_layers``, or the one ``contact`` of
``model=contact``), the weighted share of infectious among a person's
contacts of that relation,

.. math::

    \pi_{ir} = \frac{\sum_{j \to i} w^r_{ji}\, I_j}{\sum_{j \to i} w^r_{ji}}

(0 for a person without contacts of the relation): ``WeightedSum`` with
``normalize`` over the layout the contact transmission reads (at step
:math:`t`, its window :math:`t \bmod` period where contacts vary in time),
one product per relation.  Fields ``person.prevalence_<relation>``, which
:class:`~lpm_graph.behavior.RuleBehavior` reads with ``venue_types`` set to
the relations.  It observes every contact of the layout, whatever the
contacts decided (what a person hears of its contacts, not whom it meets).

:class:`NeighbourDisagreement` (an interaction) writes what a person
observes of the opinions around it, the weighted mean squared difference
between its neighbours' opinions and its own,

.. math::

    D_i = \frac{\sum_{j \to i} w_{ji}\,(x_j - x_i)^2}{\sum_{j \to i} w_{ji}}
        = \frac{S_2 - 2 x_i S_1 + x_i^2 S_0}{S_0},
    \qquad S_k = \sum_{j \to i} w_{ji}\, x_j^k

(0 for a person without neighbours): the three sums are one sparse product
of the columns :math:`[1, x, x^2]`, so the non-linear message costs no
per-edge state.  Field ``person.disagreement_<relation>``, in squared
opinion units (for opinions in [0, 1], at most 1).

:class:`StateShare` (an interaction) writes what a node observes of its own
nonnegative state :math:`x_j` (a retailer's stock) as a share in [0, 1),

.. math::

    o_j = \frac{x_j}{x_j + K},

:math:`K` the parameter ``<name>.reference`` (the level observed as one half),
a field a rule responds to with a logistic in a share.

:class:`Announcement` (an environment process) writes an announced policy,
a scalar field such as ``policy.stay_home`` equal to the parameter
``<name>.level`` while its window is active (0 otherwise, to a reader with
the optional default 0), which a behaviour can respond to.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.environment import Window
from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn import WeightedSum, spmm

__all__ = ["VenuePrevalence", "ContactPrevalence", "NeighbourDisagreement", "Announcement", "StateShare"]

_MEMBERSHIP: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class VenuePrevalence(Process):
    """The share of infectious among the members of each person's venues, per venue type (module docstring).

    Args:
        venue_types (Sequence[str]): the venue types observed. (default: household, school, workplace)
        stack (Sequence[str]): the venue types of the stacked layout read; the venue transmission's
            (so the layout is shared, not built twice). (default: household, school, workplace, community)
        source (str): the infectious indicator state. (default: ``"person.I"``)
        prefix (str): the fields written are ``<prefix>_<type>``. (default: ``"person.prevalence"``)
        relation (str): the membership relation. (default: ``"member_of"``)
        complement (bool): observe the share of members not in ``source`` (``1 - x``). (default: ``False``)
        name (str): the process name. (default: ``"prevalence"``)
    """

    role = "interaction"
    default_name = "prevalence"

    def __init__(self, venue_types: Sequence[str] = ("household", "school", "workplace"),
                 stack: Sequence[str] = ("household", "school", "workplace", "community"),
                 source: str = "person.I", prefix: str = "person.prevalence", relation: str = "member_of",
                 complement: bool = False, name: str | None = None):
        super().__init__(name)
        self.complement = bool(complement)
        self.venue_types, self.stack_types = [str(v) for v in venue_types], [str(v) for v in stack]
        if not self.venue_types:
            raise ConfigError("VenuePrevalence.venue_types is empty; list the venue types observed")
        missing = [v for v in self.venue_types if v not in self.stack_types]
        if missing:
            raise ConfigError(f"VenuePrevalence.venue_types {missing} are not in its stack {self.stack_types}")
        if prefix.count(".") != 1:
            raise ConfigError(f"VenuePrevalence.prefix must be '<node type>.<name>', got {prefix!r}")
        self.source, self.prefix, self.relation = source, prefix, relation
        self.host = prefix.split(".", 1)[0]
        self.mean = WeightedSum(normalize=True)
        self.spread = WeightedSum()

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return [(self.host, self.relation, vt) for vt in self.stack_types]

    def field(self, venue_type: str) -> str:
        return f"{self.prefix}_{venue_type}"

    def field_specs(self):
        scope, name = self.prefix.split(".", 1)
        what = f"not {self.source}" if self.complement else self.source
        return [FieldSpec(scope, f"{name}_{vt}", unit="share", doc=f"share of {what} in one's {vt} venues")
                for vt in self.venue_types]

    def reads(self):
        return [self.source]

    def requirements(self) -> Requirements:
        return Requirements(stacks={frozenset(self.edge_types)})

    def workspace(self):
        return {self.host: 2.0 * len(self.venue_types)}

    def _membership(self, stack, dtype) -> tuple[Tensor, Tensor, list[str]]:
        """Per stack (built once): the ``[V, k]`` indicator of each row's observed type and the inverse ``[N, k]``
        membership weight of each person in each observed type."""
        cache = _MEMBERSHIP.setdefault(stack.adjacency, {})
        if dtype not in cache:
            types = [et[2] for et in stack.edge_types]
            absent = [vt for vt in self.venue_types if vt not in types]
            if absent:
                raise PopulationGraphError(f"VenuePrevalence: venue types {absent} are not in the stacked layout "
                                           f"{types}")
            cols = torch.tensor([types.index(vt) for vt in self.venue_types], device=stack.type_index.device)
            onehot = (stack.type_index.unsqueeze(1) == cols.unsqueeze(0)).to(dtype)
            weight = spmm(stack.adjacency.T, onehot)
            inverse = torch.where(weight > 0, 1.0 / weight.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(weight))
            cache[dtype] = (onehot, inverse, types)
        return cache[dtype]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source]
        if self.complement:
            x = 1.0 - x
        stack = ctx.graph.stack(self.edge_types)
        adj = stack.adjacency
        onehot, inverse, _ = self._membership(stack, x.dtype)
        m = self.mean(x, adj)                                            # [V, R] venue prevalence
        k, R = onehot.size(1), x.size(1)
        blocks = (m.unsqueeze(1) * onehot.unsqueeze(2)).reshape(m.size(0), k * R)
        y = self.spread(blocks, adj.T).reshape(x.size(0), k, R) * inverse.unsqueeze(2)
        return Output(fields={self.field(vt): y[:, i] for i, vt in enumerate(self.venue_types)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, venue_types={self.venue_types}, source={self.source!r}"


class _RelationObserver(Process):
    """Base of the observers of one field per contact relation, ``<prefix>_<relation>``, of the edge types
    ``(node_type, relation, node_type)``, ``node_type`` the source's: the checks, the fields and the edges they
    read.  Subclasses set ``unit``, word :meth:`field_doc` and compute the fields in ``forward``."""

    role = "interaction"
    unit = ""

    def __init__(self, relations: Sequence[str], source: str, prefix: str, name: str | None):
        super().__init__(name)
        where = type(self).__name__
        if not isinstance(source, str) or source.count(".") != 1:
            raise ConfigError(f"{where}.source must be '<node type>.<name>', got {source!r}")
        self.node_type = source.split(".", 1)[0]
        if isinstance(relations, str) or not isinstance(relations, Sequence) or not relations:
            raise ConfigError(f"{where}.relations must be a non-empty list of contact relations, e.g. [contact], "
                              f"got {relations!r}")
        self.relations = [str(r) for r in relations]
        if len(set(self.relations)) != len(self.relations):
            raise ConfigError(f"{where}.relations lists a relation twice: {self.relations}")
        if not isinstance(prefix, str) or prefix.count(".") != 1 or prefix.split(".", 1)[0] != self.node_type:
            raise ConfigError(f"{where}.prefix must be '{self.node_type}.<name>', got {prefix!r}")
        self.source, self.prefix = source, prefix

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return [(self.node_type, r, self.node_type) for r in self.relations]

    def field(self, relation: str) -> str:
        return f"{self.prefix}_{relation}"

    def field_doc(self, relation: str) -> str:
        """The documentation of the field of ``relation`` (``field_specs``)."""
        return f"{type(self).__name__} of {self.source} over one's {relation} contacts"

    def field_specs(self):
        scope, name = self.prefix.split(".", 1)
        return [FieldSpec(scope, f"{name}_{r}", unit=self.unit, doc=self.field_doc(r)) for r in self.relations]

    def reads(self):
        return [self.source]

    def requirements(self) -> Requirements:
        return Requirements(edge_types=set(self.edge_types))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, relations={self.relations}, source={self.source!r}"


class ContactPrevalence(_RelationObserver):
    """The share of infectious among each person's contacts, per contact relation (module docstring).

    Args:
        relations (Sequence[str]): the relations observed, each the edge type ``(node_type, relation,
            node_type)``. (default: ``["contact"]``)
        source (str): the infectious indicator state. (default: ``"person.I"``)
        prefix (str): the fields written are ``<prefix>_<relation>``. (default: ``"person.prevalence"``)
        name (str): the process name. (default: ``"prevalence"``)

    Shapes:
        - **input:** ``source`` :math:`(N, R)`
        - **output:** one field :math:`(N, R)` per relation
    """

    default_name = "prevalence"
    unit = "share"

    def __init__(self, relations: Sequence[str] = ("contact",), source: str = "person.I",
                 prefix: str = "person.prevalence", name: str | None = None):
        super().__init__(relations, source, prefix, name)
        self.mean = WeightedSum(normalize=True)

    def field_doc(self, relation: str) -> str:
        return f"share of {self.source} among one's {relation} contacts"

    def workspace(self):
        return {self.node_type: float(len(self.relations))}

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source]
        return Output(fields={self.field(et[1]): self.mean(x, ctx.graph.layout(et, ctx.t)) for et in self.edge_types})


class NeighbourDisagreement(_RelationObserver):
    """The weighted mean squared difference between one's neighbours' opinions and one's own (module docstring).

    Args:
        relations (Sequence[str]): the relations observed, each the edge type ``(node_type, relation,
            node_type)``. (default: ``["contact"]``)
        source (str): the opinion state. (default: ``"person.opinion"``)
        prefix (str): the fields written are ``<prefix>_<relation>``. (default: ``"person.disagreement"``)
        name (str): the process name. (default: ``"disagreement"``)

    Shapes:
        - **input:** ``source`` :math:`(N, R)`
        - **output:** one field :math:`(N, R)` per relation
    """

    default_name = "disagreement"
    unit = "opinion^2"

    def __init__(self, relations: Sequence[str] = ("contact",), source: str = "person.opinion",
                 prefix: str = "person.disagreement", name: str | None = None):
        super().__init__(relations, source, prefix, name)
        self.sums = WeightedSum()

    def field_doc(self, relation: str) -> str:
        return f"mean squared difference of one's {relation} neighbours' {self.source} from one's own"

    def workspace(self):
        return {self.node_type: 3.0 + len(self.relations)}

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source]
        R = x.size(1)
        cols = torch.cat([torch.ones_like(x[:, :1]), x, x * x], 1)
        out = {}
        for et in self.edge_types:
            s = self.sums(cols, ctx.graph.layout(et, ctx.t))
            s0, s1, s2 = s[:, :1], s[:, 1:1 + R], s[:, 1 + R:]
            inverse = torch.where(s0 > 0, 1.0 / s0.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(s0))
            out[self.field(et[1])] = ((s2 - 2.0 * x * s1 + x * x * s0) * inverse).clamp_min(0.0)
        return Output(fields=out)


class Announcement(Window):
    """An announced policy: the scalar field ``field`` is the parameter ``level`` while active (module docstring).

    Args:
        field (str): the field written, ``"<scope>.<name>"``. (default: ``"policy.stay_home"``)
        start (int), end (int): the window ``[start, end)``.
        level (float): default of the parameter ``<name>.level`` in [0, 1]. (default: ``1.0``)
        name (str): the process name. (default: ``"announcement"``)
    """

    default_name = "announcement"

    def __init__(self, field: str = "policy.stay_home", start: int = 0, end: int | None = None, level: float = 1.0,
                 name: str | None = None):
        super().__init__(start, end, name)
        if not isinstance(field, str) or field.count(".") != 1:
            raise ConfigError(f"Announcement.field must be '<scope>.<name>', got {field!r}")
        self.field, self.level = field, float(level)

    def param_specs(self):
        return [ParamSpec("level", "probability", default=self.level, doc=f"{self.field} while announced")]

    def field_specs(self):
        scope, name = self.field.split(".")
        return [FieldSpec(scope, name, per_node=False, doc="announced policy (0 when not announced)")]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        if not self.active(ctx.t):
            return Output()
        return Output(fields={self.field: self.value(ctx, "level")})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, field={self.field!r}, start={self.start}, end={self.end}"


class StateShare(Process):
    """What a node observes of its own nonnegative state, as the share ``x / (x + K)`` (module docstring).

    Args:
        source (str): the state observed, ``"<node type>.<name>"`` (e.g. ``"retailer.stock"``).
        field (str): the field written, of the same node type (e.g. ``"retailer.observed_stock"``).
        reference (float): default of the parameter ``<name>.reference`` :math:`K`, the level observed as one
            half, in the state's units. (default: ``1.0``)
        name (str): the process name. (default: ``"observed"``)
    """

    role = "interaction"
    default_name = "observed"

    def __init__(self, source: str, field: str, reference: float = 1.0, name: str | None = None):
        super().__init__(name)
        for what, k in (("source", source), ("field", field)):
            if not isinstance(k, str) or k.count(".") != 1:
                raise ConfigError(f"StateShare.{what} must be '<node type>.<name>', got {k!r}")
        if source.split(".")[0] != field.split(".")[0]:
            raise ConfigError(f"StateShare.field {field!r} must be of the node type of its source {source!r}")
        if not float(reference) > 0:
            raise ConfigError(f"StateShare.reference must be positive (the level observed as one half), "
                              f"got {reference!r}")
        self.source, self.field, self.reference = source, field, float(reference)

    def param_specs(self):
        return [ParamSpec("reference", "positive", default=self.reference, unit=f"units of {self.source}",
                          doc=f"the level of {self.source} observed as one half")]

    def field_specs(self):
        scope, name = self.field.split(".")
        return [FieldSpec(scope, name, unit="share", doc=f"{self.source} / ({self.source} + reference)")]

    def reads(self):
        return [self.source]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source].clamp_min(0.0)
        k = self.value(ctx, "reference").to(x.dtype)
        return Output(fields={self.field: x / (x + k)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, source={self.source!r}, field={self.field!r}"
