r"""Interactions :math:`\sum_j m_{ij}`: the force of infection on each person.

An interaction maps the infectiousness every person emits (field
``person.infectiousness``, from :class:`~lpm_graph.models.epidemic.Infectiousness`)
to the force of infection :math:`\lambda_i` it exerts (field
``person.force_of_infection``, summed over interactions), using the
:class:`~lpm_graph.nn.WeightedSum` layer.  Every rate that depends on a node
(contact intensity of a venue type, closure of a venue type,
frequency-dependent normalisation) is applied per node outside the sparse
sums, so each interaction is two (venues) or one (contacts) sparse products
per step and autograd keeps nothing per edge.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, Read
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn import SparseAdjacency, WeightedSum

#: the epidemic's names of the one linear interaction (:class:`~lpm_graph.nn.WeightedSum`): person -> venue
#: infectious pressure, venue -> person and person -> person force of infection
VenuePressure = VenueInfection = ContactInfection = WeightedSum

__all__ = ["VenueTransmission", "ContactTransmission", "contact_scale"]

MEMBER_OF = "member_of"


def contact_scale(scope: str) -> str:
    """The field that scales the contact of a venue type or contact relation (closures write it)."""
    return f"{scope}.contact_scale"


class _Transmission(Process):
    role = "interaction"
    partitionable = True  # sums through the graph's layouts only (the venue blocks of decisions refuse a part)

    def __init__(self, source: str, target: str, name: str | None):
        super().__init__(name)
        self.source, self.target = source, target

    def field_specs(self):
        scope, name = self.target.split(".", 1)
        return [FieldSpec(scope, name, combine="sum", unit="1/day", doc="force of infection")]


class VenueTransmission(_Transmission):
    r"""Transmission inside venues, for all venue types at once.

    .. math::

        \lambda_i = \sum_{v \ni i} w_{vi}\;
            \beta_{\tau(v)}\, e_{\tau(v)}(t)\, c_v
            \sum_{j \in v} w_{jv}\, x_j,
        \qquad c_v = \Big(\sum_{j\in v} w_{jv}\Big)^{-1} \text{ if normalize}

    with :math:`\tau(v)` the type of venue :math:`v`, :math:`\beta_\tau` the
    parameter ``beta_<type>`` and :math:`e_\tau(t)` the field
    ``<type>.contact_scale`` (1 without a writer; closures write it).  With
    ``normalize`` mixing is frequency-dependent: a person meets a fixed
    amount of contact per venue, shared among members.  The venue types'
    membership edges ``('person', 'member_of', <type>)`` are stacked into one
    bipartite layout, so the channel is two sparse products per step.

    **Decisions** (:mod:`lpm_graph.behavior`).  The behaviour's decision
    fields ``person.stays_home`` (:math:`h_i`) and ``person.avoids_<type>``
    (:math:`a_{i\tau}`), probabilities read as optional (0 without a writer),
    make each person's presence in a venue of type :math:`\tau`

    .. math::

        q_{i\tau} = \big(1 - h_i\,[\tau \in H]\big)\,(1 - a_{i\tau}),

    with :math:`H` the types ``stays_home_types`` (school and workplace: who
    stays home is still at home), and the membership weight of person
    :math:`i` in venue :math:`v` becomes :math:`w_{iv}\,q_{i\tau(v)}` in both
    sums — what the person brings and what the person receives:

    .. math::

        \lambda_i = \sum_{v \ni i} w_{vi}\,q_{i\tau(v)}\;
            \beta_{\tau(v)}\, e_{\tau(v)}(t)\, c_v
            \sum_{j \in v} w_{jv}\,q_{j\tau(v)}\, x_j,
        \qquad c_v = \Big(\sum_{j\in v} w_{jv}\,q_{j\tau(v)}\Big)^{-1}.

    A venue's size is then its *effective* size, the expected weight of the
    members present: a member who stays home with probability :math:`h`
    counts :math:`1 - h`, so under frequency dependence the contact of those
    who come is shared among fewer people (their per-contact rate rises and
    their force of infection depends on the prevalence among those present),
    while those who stay home receive nothing there.  A venue everyone
    avoids has size 0 and no transmission.  Since a member's presence depends
    only on the person and the venue's type, the per-edge weights
    :math:`w_{iv} q_{i\tau(v)}` are applied exactly as person-level scaling
    before and after the products of each venue type's block of the stacked
    layout (a block per type, built once: every edge is in one block, so a
    step touches each edge once per product, as without decisions, and
    autograd keeps nothing per edge); the effective sizes are one more
    column of the first product.  All replicate columns go through one
    product.  Without any decision field the step is the one above,
    unchanged.

    Args:
        venue_types (Sequence[str]): venue node types covered; each needs a
            parameter ``beta_<type>``.
        normalize (bool): divide by venue size. (default: ``True``)
        source (str): the infectiousness field read. (default: ``"person.infectiousness"``)
        target (str): the force field added to. (default: ``"person.force_of_infection"``)
        stays_home_types (Sequence[str], optional): the venue types a person
            who stays home leaves, among ``venue_types``. (default: ``school``
            and ``workplace``, those of them covered)
        name (str): the process name. (default: ``"transmission"``)
    """

    default_name = "transmission"

    def __init__(self, venue_types: Sequence[str] = ("household", "school", "workplace", "community"),
                 normalize: bool = True, source: str = "person.infectiousness",
                 target: str = "person.force_of_infection", stays_home_types: Sequence[str] | None = None,
                 name: str | None = None):
        super().__init__(source, target, name)
        self.venue_types = list(venue_types)
        if not self.venue_types:
            raise ConfigError("VenueTransmission.venue_types is empty; list the venue node types it covers")
        if stays_home_types is None:
            stays_home_types = [v for v in ("school", "workplace") if v in self.venue_types]
        self.stays_home_types = [str(v) for v in stays_home_types]
        unknown = [v for v in self.stays_home_types if v not in self.venue_types]
        if unknown:
            raise ConfigError(f"VenueTransmission.stays_home_types {unknown} are not among venue_types "
                              f"{self.venue_types}")
        self.normalize = bool(normalize)
        self.host = source.split(".", 1)[0]
        self.pressure = VenuePressure()
        self.infection = VenueInfection()

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return [(self.host, MEMBER_OF, vt) for vt in self.venue_types]

    def param_specs(self):
        return [ParamSpec(f"beta_{vt}", "nonnegative", unit="1/day", doc=f"contact intensity in {vt} venues")
                for vt in self.venue_types]

    def reads(self):
        return [self.source, *(Read(contact_scale(vt), optional=True, default=1.0) for vt in self.venue_types),
                *(Read(k, optional=True, default=0.0) for k in self.decision_keys)]

    @property
    def decision_keys(self) -> list[str]:
        """The decision fields read (optional): ``<host>.stays_home`` and ``<host>.avoids_<type>``."""
        return [f"{self.host}.stays_home", *(f"{self.host}.avoids_{vt}" for vt in self.venue_types)]

    def requirements(self) -> Requirements:
        return Requirements(stacks={frozenset(self.edge_types)})

    def layout_copies(self, written) -> dict:
        # with a decision written, the stack is cut into one block (and transpose) per venue type, built at the
        # first step and kept: a copy of the stack's edges, and the stack's int64 row index they are cut from
        return {frozenset(self.edge_types): 1} if any(k in written for k in self.decision_keys) else {}

    def check_graph(self, graph) -> None:
        present = [et[2] for et in graph.data.edge_types if et[0] == self.host and et[1] == MEMBER_OF]
        extra = [vt for vt in present if vt not in self.venue_types]
        if extra:
            raise PopulationGraphError(
                f"VenueTransmission covers venue types {self.venue_types} but the population graph also has "
                f"{extra} (no beta for them; add them to venue_types and model.params.{self.name})")

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = fields[self.source]
        stack = ctx.graph.stack(self.edge_types)
        adj = stack.adjacency
        types = [et[2] for et in stack.edge_types]
        betas = torch.stack([self.value(ctx, f"beta_{vt}") * fields.get(contact_scale(vt), 1.0) for vt in types])
        venue_rate = betas.to(x.dtype).index_select(0, stack.type_index)
        presence = self.presence(fields, types, x)
        if presence is not None:
            return Output(fields={self.target: self._with_presence(x, stack, betas.to(x.dtype), presence)})
        if self.normalize:
            venue_rate = venue_rate * stack.inverse_weight.to(x.dtype)
        p = self.pressure(x, adj, scale=venue_rate)
        return Output(fields={self.target: self.infection(p, adj.T)})

    def presence(self, fields: dict, types: Sequence[str], like: Tensor) -> Tensor | None:
        """``[R', N, types]`` presence :math:`q_{i\tau}` from the decision fields, in the stack's type order
        (``R'`` 1 or ``R``), and whether a decision acts on each type; ``None`` when no decision field is written
        (the step without decisions)."""
        home = fields.get(f"{self.host}.stays_home")
        avoid = {vt: fields.get(f"{self.host}.avoids_{vt}") for vt in types}
        if home is None and all(v is None for v in avoid.values()):
            return None
        n = like.size(0)

        def away(v):  # 1 - decision, [R', N]
            v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
            return (1.0 - v).expand(n, 1).T if v.dim() == 0 else (1.0 - v.to(like.dtype)).T

        factors = {vt: away(v) for vt, v in avoid.items() if v is not None}
        stay = away(home) if home is not None else None
        width = max([f.size(0) for f in factors.values()] + ([stay.size(0)] if stay is not None else []))
        q = like.new_ones(width, n, len(types))
        for k, vt in enumerate(types):  # each column written once, from tensors that are not views of q
            col = stay if stay is not None and vt in self.stays_home_types else None
            if vt in factors:
                col = factors[vt] if col is None else col * factors[vt]
            if col is not None:
                q[:, :, k] = col
        return q, [vt in factors or (stay is not None and vt in self.stays_home_types) for vt in types]

    def _with_presence(self, x: Tensor, stack, betas: Tensor, presence: Tensor) -> Tensor:
        """The force with each member's weight scaled by its presence (class docstring), exactly, as person-level
        scaling before and after the sparse products of each venue type's block of the stack: a member's presence
        in a type scales what it sends into, and what it receives from, the venues of that type; every edge is touched once per product, as in the step without decisions."""
        if stack.adjacency.src_halo is not None or stack.adjacency.dst_halo is not None:
            raise ConfigError(f"process {self.name!r}: behaviour decisions (person.stays_home, person.avoids_<type>) "
                              "are not supported in a partitioned run (their per-type blocks are local layouts); run "
                              "in one process")
        lam = None
        R = x.size(1)
        presence, decided = presence
        for k, (block, block_t) in enumerate(_type_blocks(stack)):
            if not decided[k]:  # nobody decides about this type: its block as without decisions
                off, n = stack.offsets[stack.edge_types[k]], block.shape[0]
                scale = stack.inverse_weight[off:off + n].to(x.dtype) * betas[k] if self.normalize else betas[k]
                part = self.infection(self.pressure(x, block) * (scale.unsqueeze(1) if self.normalize else scale),
                                      block_t)
                lam = part if lam is None else lam + part
                continue
            q = presence[:, :, k].T                                     # [N, R'] presence in venues of type k
            sent = x * q
            if self.normalize:                                           # effective size: those present
                both = self.pressure(torch.cat([sent, q], 1), block)
                size = both[:, R:]
                inverse = torch.where(size > 0, 1.0 / size.clamp_min(torch.finfo(x.dtype).tiny),
                                      torch.zeros_like(size))
                p = both[:, :R] * (inverse * betas[k])
            else:
                p = self.pressure(sent, block) * betas[k]
            part = q * self.infection(p, block_t)
            lam = part if lam is None else lam + part
        return lam


def _block_layouts(stack) -> list:
    """Each venue type's rows of a stack as its own layout and transpose (built once per stack): the rows of a
    type are contiguous in the stack, so a block holds that type's edges only and the blocks hold every edge once."""
    adj = stack.adjacency
    crow = adj.csr.crow_indices().to(torch.int64)
    cols, vals, rows = adj.csr.col_indices().to(torch.int64), adj.csr.values(), adj.rows()
    counts = torch.bincount(stack.type_index, minlength=len(stack.edge_types)).tolist()
    out = []
    for et, n in zip(stack.edge_types, counts):
        off = stack.offsets[et]
        lo, hi = int(crow[off]), int(crow[off + n])
        block = SparseAdjacency.from_edge_index(torch.stack([cols[lo:hi], rows[lo:hi] - off]), vals[lo:hi],
                                                (adj.shape[1], n), dtype=vals.dtype)
        out.append((block, block.T))
    return out


_BLOCKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _type_blocks(stack) -> list:
    blocks = _BLOCKS.get(stack.adjacency)
    if blocks is None:
        blocks = _BLOCKS[stack.adjacency] = _block_layouts(stack)
    return blocks


class ContactTransmission(_Transmission):
    r"""Transmission along one explicit contact edge type.

    .. math::

        \lambda_i = \beta\, e_{r}(t) \sum_{j \to i} w_{ji}\, x_j

    with :math:`e_r(t)` the field ``<relation>.contact_scale`` (1 without a
    writer).  Undirected contacts are stored both ways.

    **Decisions** (:mod:`lpm_graph.behavior`).  The behaviour's decision
    fields ``<type>.stays_home`` (:math:`h_i`) and ``<type>.avoids_<relation>``
    (:math:`a_{i}`) of the edge type's source and destination node types,
    probabilities read as optional (0 without a writer), make each person's
    presence in this layer's contacts

    .. math::

        q_i = \big(1 - h_i\,[\text{not household}]\big)\,(1 - a_i),

    (who stays home keeps the contacts of the household layer,
    ``household: true``, and leaves every other layer's), and a contact
    happens only if both ends are present, so the weight of the edge
    :math:`j \to i` becomes :math:`w_{ji}\, q_j\, q_i`:

    .. math::

        \lambda_i = \beta\, e_{r}(t)\; q_i \sum_{j \to i} w_{ji}\, q_j\, x_j .

    A person home with probability :math:`h` is present :math:`1 - h`, so a
    contact between two people outside the household happens with probability
    :math:`(1 - h_i)(1 - h_j)` (the decisions of different people
    independent).  The decided weight is a product of a factor of each end,
    so it is applied exactly as person-level scaling before and after the one
    sparse product (the layout's values are not rewritten and autograd keeps
    nothing per edge: the gradient in :math:`q` is that of the two per-node
    products, exact).  All replicate columns go through one product.  On a
    part of a partitioned graph the scaling is of owned rows before the
    product, whose halo exchange carries the scaled sources, so it stays
    correct there (a behaviour itself is not partitionable, and refuses the
    partitioned run).  Without any decision field the step is the one above,
    unchanged.

    Args:
        edge_type (Sequence[str]): the contact edge type, e.g.
            ``('person', 'contact', 'person')``; any source and destination
            node types.
        source (str), target (str): fields read and added to.
        household (bool): the household layer: a person who stays home keeps
            its contacts (only ``avoids_<relation>`` acts on it). (default:
            ``False``: staying home removes this layer's contacts)
        name (str): the process name; its parameter ``beta`` is the
            transmission rate per unit weight. (default: the relation)

    Shapes:
        - **input:** ``source`` :math:`(|\mathcal{V}_s|, R)`; decisions
          :math:`(|\mathcal{V}|, R)`, :math:`(|\mathcal{V}|, 1)` or a number
        - **output:** ``target`` :math:`(|\mathcal{V}_t|, R)`
    """

    def __init__(self, edge_type: Sequence[str] = ("person", "contact", "person"),
                 source: str = "person.infectiousness", target: str = "person.force_of_infection",
                 household: bool = False, name: str | None = None):
        self.edge_type = tuple(edge_type)
        if len(self.edge_type) != 3 or not all(isinstance(x, str) for x in self.edge_type):
            raise ConfigError(f"ContactTransmission.edge_type must be [src, relation, dst], got {list(edge_type)}")
        if not isinstance(household, bool):
            raise ConfigError(f"ContactTransmission.household must be true or false, got {household!r}")
        self.default_name = self.edge_type[1]
        super().__init__(source, target, name)
        self.household = household
        self.infection = ContactInfection()

    def param_specs(self):
        return [ParamSpec("beta", "nonnegative", unit="1/(day * edge weight)",
                          doc=f"transmission rate per unit weight of {self.edge_type[1]} contacts")]

    def decision_fields(self, node_type: str) -> list[str]:
        """The decision fields of ``node_type`` read (optional): ``stays_home`` (not on a household layer) and
        ``avoids_<relation>``."""
        return [*(() if self.household else (f"{node_type}.stays_home",)),
                f"{node_type}.avoids_{self.edge_type[1]}"]

    @property
    def decision_keys(self) -> list[str]:
        """Every decision field read, of the source and the destination node types."""
        ends = dict.fromkeys((self.edge_type[0], self.edge_type[2]))
        return [k for t in ends for k in self.decision_fields(t)]

    def reads(self):
        return [self.source, Read(contact_scale(self.edge_type[1]), optional=True, default=1.0),
                *(Read(k, optional=True, default=0.0) for k in self.decision_keys)]

    def requirements(self) -> Requirements:
        return Requirements(edge_types={self.edge_type})

    def presence(self, fields: dict, node_type: str) -> Tensor | float | None:
        r""":math:`q = \prod (1 - d)` over the decisions of ``node_type`` written (``[N, R']`` or a number);
        ``None`` when none is."""
        q = None
        for k in self.decision_fields(node_type):
            d = fields.get(k)
            if d is not None:
                q = (1.0 - d) if q is None else q * (1.0 - d)
        return q

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = fields[self.source]
        sent, received = self.presence(fields, self.edge_type[0]), self.presence(fields, self.edge_type[2])
        if sent is not None:
            x = x * sent
        lam = self.infection(x, ctx.graph.layout(self.edge_type, ctx.t))
        if received is not None:
            lam = lam * received
        scale = fields.get(contact_scale(self.edge_type[1]), 1.0)
        return Output(fields={self.target: lam * (self.value(ctx, "beta") * scale)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, edge_type={self.edge_type}" + (", household=True" if self.household else "")
