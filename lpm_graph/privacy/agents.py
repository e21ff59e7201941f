r"""Private agents in a step: their state stays on their side, the simulator sees securely aggregated sums.

Some agents of the host node type (people) are *private*: each is a
:class:`PrivateClient`, an object holding its own compartments that the
simulator never reads.  One step of the venue epidemic
(:class:`~lpm_graph.models.epidemic.VenueTransmission` between an emission
and an update such as :class:`~lpm_graph.models.epidemic.SEIR`) becomes

.. math::

    P_v = \underbrace{\sum_{j \in v,\ j \text{ simulated}} w_{jv} x_j}_{\text{the simulator's sparse product}}
        \;+\; \underbrace{\sum_{j \in v,\ j \text{ private}} w_{jv} x_j}_{\text{secure sum of the clients' vectors}},
    \qquad p_v = \beta_{\tau(v)} e_{\tau(v)} c_v P_v,
    \qquad \lambda_i = \sum_{v \ni i} w_{vi} p_v,

1. **Contribution round.** Every private agent runs the model's own
   emission process (``Infectiousness``) on its own row, with the public
   parameters and the public fields of its row, and builds a vector over
   the *aggregation groups* (below): :math:`w_{jv} x_j` added into the
   entry of each of its venues' group, zeros elsewhere, one column per
   replicate.  The vectors are fixed-point encoded
   (:class:`~lpm_graph.privacy.encoding.FixedPoint`) and summed by
   :func:`~lpm_graph.privacy.secagg.secure_sum`: the aggregator learns the
   group sums and nothing else.
2. **The sum.** The transmission's venue sum (its ``pressure`` layer, the
   swappable aggregation) adds the decoded group sums to the simulator's
   own sparse product over the simulated agents; the simulated rows of the
   private agents are zero in that product.
3. **Broadcast.** Each private agent receives the public aggregate it
   needs, its force of infection :math:`\lambda_i` — a function of the
   venue pressures at its venues and its own membership weights.
4. **Local update.** Each private agent runs the model's own update process
   (``SEIR``) on its own row with the same counter-based random numbers as
   the simulator would have used: a client's generator is keyed by its
   uid, the run's seed, the replicate and the stream
   (:class:`~lpm_graph.core.random.CounterRNG`), so its draws are those of
   its row in a clear run.
5. **Observables round.** The private agents' compartments and events are
   summed securely (one more vector per agent) by *release group* — the
   update's grouping (age group) where a group has at least :math:`k`
   private agents, the others pooled — and only those totals are released.
   The simulator's rows of the private agents hold them spread evenly over
   the group's private rows (:math:`C_g / n_g` each), so every count,
   outcome and observation model sees the whole population's totals, and a
   grouped observable by the update's grouping is exact for the groups of
   their own (a pooled group's total is split by its members' public
   groups, not released).

**Aggregation groups and the minimum group size.**  A sum of fewer than
:math:`k` contributions (``min_group``, at least 3) reveals too much (a sum
of two reveals each to the other), so a group's entry is released only
when at least :math:`k` distinct private agents contribute to it.  A venue
with at least :math:`k` private members is its own group.  Venues with
between 1 and :math:`k - 1` private members are handled by the declared
rule ``small_groups``:

``refuse``  the run is refused (a :class:`~lpm_graph.errors.PrivacyConfigError`
            counting such venues per type); the trajectory is then that of
            the clear run up to the quantisation (below).
``merge``   the small venues of a venue type are merged, in venue order,
            into groups of at least :math:`k` distinct private members (a
            remainder joins the type's last merged group; a type whose small
            venues have fewer than :math:`k` private members in all joins
            the last merged group of another type; refused if no group can
            be formed).  A merged group's sum :math:`S_g` is shared over its
            venues by their private membership weight,
            :math:`\hat P^\text{priv}_v = S_g\, m_v / \sum_{u \in g} m_u`
            with :math:`m_v = \sum_{j \in v \text{ private}} w_{jv}`: each
            small venue gets its group's mean private infectiousness, an
            approximation of its own (the trajectory then differs from the
            clear run by more than the quantisation; the summary counts the
            merged venues).

Every release group of the observables round has at least :math:`k`
private agents.  An agent offline in a round (``dropout``, a probability
per agent and round, drawn from its own counter-based stream
``privacy.dropout``) sends nothing: before a contribution round, the
entries of groups left with fewer than :math:`k` live contributors are
announced and every live contributor zeroes them (withheld: those venues
get no private contribution that step); an observables round in which a
release group is short of :math:`k` live agents releases one total of all
live agents; the released totals cover the live agents (spread over all
private rows of the group, they are scaled by its
:math:`n_\text{private} / n_\text{live}`).

**Quantisation.** Every encoded value is a multiple of the fixed-point
resolution :math:`\delta = 2^{-\text{frac\_bits}}` within :math:`\delta/2`
of the value (round to nearest), so a venue's private sum is within
:math:`m^\#_v\,\delta/2` of the clear sum (:math:`m^\#_v` its private
contributors; a merged venue: its share of its group's), the force of infection of a person within

.. math::

    |\tilde\lambda_i - \lambda_i| \le \frac{\delta}{2} \sum_{v \ni i} w_{vi}\,\beta_{\tau(v)} e_{\tau(v)} c_v\, m^\#_v

(:meth:`PrivateAgents.force_bound`), and a released count within
:math:`n_\text{private}\,\delta/2`.  In ``mode=expected`` (float64) a step's
probabilities then move by at most :math:`\sigma_{\max}\,\Delta t` times the
force bound; in ``mode=stochastic`` a run gives the clear run's
compartment counts exactly unless some draw :math:`u` falls within
:math:`\sigma\,\Delta t\,|\tilde\lambda_i - \lambda_i|` of its probability
(at ``frac_bits=32``, about :math:`10^{-9}` per draw; then one agent's
event flips and the two runs part).  Values above ``clip`` are refused,
never clipped: the fixed-point range bounds a sum's capacity.

**Differential privacy** (``noise_multiplier``, optional):  a noise party
adds discrete Gaussian noise (:mod:`lpm_graph.privacy.dp`, from
``secrets``) of scale :math:`\sigma = z\,\Delta_2` to the fixed-point
integers of the released totals (``noise_on=released``) or of every sum
(``all``: the venue sums too), inside the secure sum (one more masked
input), so the aggregator sees only the noisy sums; :math:`\Delta_2` is the L2
norm one agent can move the vector by (contribution round:
``clip`` :math:`\cdot 2^{\text{frac\_bits}}\sqrt{g_{\max} R}` with
:math:`g_{\max}` the most groups one agent contributes to; observables
round: :math:`2^{\text{frac\_bits}}\sqrt{e R}` with :math:`e` the entries
per agent, each in [0, 1]).  Each release costs :math:`\rho = 1/(2z^2)`
zCDP; the summary reports :math:`\rho` and :math:`(\varepsilon, \delta)`
over every run of the process (a calibration: every iteration).  Noisy
decoded pressures are clipped at 0 (post-processing).

**What the simulator learns** (threat model of this module; the protocol's
own is in ``docs/privacy.md``): the population graph (who belongs to which
venue, the public synthetic structure: venue sizes normalise the
contacts), the parameters, each group's sum per round, each private
agent's force of infection (a function of those) and the released totals.
It does not learn a private agent's compartment, infectiousness, draws or
events.  The initial states are the run's seeding, a public function of the
seed (so a clear run is comparable); each client takes its own row and the
simulator's rows are replaced by the released totals.  A client's gradient
does not cross the aggregation: in a gradient run (``task=calibrate``) the
private sums are constants, so the gradient is that of the simulated agents'
part (biased low by the private share).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lpm_graph.core.loop import Model
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.random import CounterRNG, stream_id
from lpm_graph.errors import ConfigError, PopulationGraphError, PrivacyConfigError

__all__ = ["PrivateAgents", "PrivateClient", "PrivateModel", "PrivateTransmission", "PrivateUpdate", "SMALL_GROUPS",
           "aggregation_groups"]

SMALL_GROUPS = ("refuse", "merge")
#: the stream keying the private agents chosen by ``fraction`` (with ``selection_seed``, not the run's seed)
SELECT_STREAM = "privacy.select"
#: which sums get noise: the released totals, or the venue sums too
NOISE_ON = ("released", "all")
#: the noise added to a sum is taken to lie within this many sigma for the sum's capacity (20: beyond, e^-200)
NOISE_TAILS = 20.0
#: a client's stream of its dropouts (per round)
DROPOUT_STREAM = "privacy.dropout"


# -- aggregation groups ---------------------------------------------------------------------------------------
@dataclass
class Groups:
    """Venues (rows of the transmission's stack) -> aggregation groups of at least ``k`` private contributors.

    Attributes:
        of_row (np.ndarray): ``[V]`` group of each stack row, -1 where no private agent is a member.
        share (np.ndarray): ``[V]`` the row's share of its group's sum (1 for a venue that is its own group).
        size (np.ndarray): ``[G]`` distinct private contributors per group.
        merged (dict): venue type -> venues merged into groups with others.
    """

    of_row: np.ndarray
    share: np.ndarray
    size: np.ndarray
    merged: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.size.size)


def aggregation_groups(rows: np.ndarray, members: np.ndarray, weights: np.ndarray, type_of_row: np.ndarray,
                       type_names: Sequence[str], num_rows: int, k: int, rule: str) -> Groups:
    """The aggregation groups of the private memberships ``(rows[e], members[e], weights[e])`` (module docstring).

    Args:
        rows: stack row (venue) of each private membership edge.
        members: the private agent (any id) of each edge.
        weights: the edge's weight :math:`w_{jv}`.
        type_of_row: ``[num_rows]`` venue type index of each row.
        type_names: venue type names by index (for messages).
        num_rows: rows of the stack.
        k: the minimum group size.
        rule: ``refuse`` or ``merge``.
    """
    of_row = np.full(num_rows, -1, dtype=np.int64)
    share = np.zeros(num_rows, dtype=np.float64)
    members_of: dict[int, set] = {}
    for r, m in zip(rows.tolist(), members.tolist()):
        members_of.setdefault(r, set()).add(m)
    mass = np.zeros(num_rows, dtype=np.float64)
    np.add.at(mass, rows, weights.astype(np.float64))
    sizes: list[int] = []
    small: dict[int, list[int]] = {}
    for r in sorted(members_of):
        if len(members_of[r]) >= k:
            of_row[r] = len(sizes)
            share[r] = 1.0
            sizes.append(len(members_of[r]))
        else:
            small.setdefault(int(type_of_row[r]), []).append(r)
    if small and rule == "refuse":
        counts = {type_names[t]: len(v) for t, v in sorted(small.items())}
        raise PrivacyConfigError(f"privacy.small_groups=refuse: venues with 1 to {k - 1} private members would reveal "
                                 f"their members' sums (privacy.min_group={k}): {counts} venues by type; set "
                                 "privacy.small_groups=merge (small venues pooled into groups of at least min_group), "
                                 "or "
                                 "choose the private agents so that each venue has none or at least min_group of them")
    merged: dict[str, int] = {}
    groups: list[list[int]] = []       # merged groups: rows
    group_type: list[int] = []
    leftovers: list[list[int]] = []
    for t, rs in sorted(small.items()):
        current, who = [], set()
        first = len(groups)
        for r in rs:
            current.append(r)
            who |= members_of[r]
            if len(who) >= k:
                groups.append(current)
                group_type.append(t)
                current, who = [], set()
        if current:
            if len(groups) > first:        # a remainder joins the type's last group
                groups[-1].extend(current)
            else:
                leftovers.append(current)  # the type's small venues have fewer than k private members in all
        merged[type_names[t]] = len(rs)
    for rest in leftovers:
        if not groups:
            raise PrivacyConfigError(f"privacy.small_groups=merge: the venues with fewer than privacy.min_group={k} "
                                     f"private members hold fewer than {k} private agents in all ({merged}), so no "
                                     f"group of {k} can be formed; choose more private agents or a smaller min_group "
                                     "(at least 3)")
        groups[-1].extend(rest)
    for rs in groups:
        g = len(sizes)
        who = set().union(*(members_of[r] for r in rs))
        total = float(mass[rs].sum())
        for r in rs:
            of_row[r] = g
            share[r] = mass[r] / total if total > 0 else 1.0 / len(rs)
        sizes.append(len(who))
    return Groups(of_row, share, np.asarray(sizes, dtype=np.int64), merged)


# -- the client -----------------------------------------------------------------------------------------------
class _OwnGraph:
    """What a client's copy of a process reads of a graph: its own node (uid, group codes) and nothing else."""

    def __init__(self, node_type: str, uid: int, groups: Mapping[str, int], device):
        self.uid = {node_type: torch.tensor([uid], dtype=torch.int64, device=device)}
        self.num_nodes = {node_type: 1}
        self.groupings = dict(groups)
        self._index = {g: torch.tensor([c], dtype=torch.int64, device=device) for g, c in groups.items()}
        self.device = torch.device(device)

    def group_index(self, name: str) -> Tensor:
        return self._index[name]


class PrivateClient:
    """One private agent: its own state, its venues' groups and weights, its generator; the simulator holds
    only this object's public methods' results.

    Args:
        uid (int): the agent's stable id (keys its random numbers, as its row's in a clear run).
        node_type (str): its node type.
        groups (np.ndarray): the aggregation groups of its venues (one entry per venue, repeats allowed).
        weights (np.ndarray): its membership weight :math:`w_{jv}` in each of those venues.
        codes (Mapping[str, int]): its group code in each grouping of the model (age group...).
        state (dict): its initial state, ``{key: [1, R, ...]}``.
        seed (int), replicates (int): the run's.
    """

    def __init__(self, uid: int, node_type: str, groups: np.ndarray, weights: np.ndarray, codes: Mapping[str, int],
                 state: dict[str, Tensor], seed: int, replicates: int, device):
        self.uid = int(uid)
        self._groups, self._weights = groups, weights
        self._graph = _OwnGraph(node_type, uid, codes, device)
        self._state = state
        self._rngs = {node_type: CounterRNG(self._graph.uid[node_type], seed, replicates, node_type)}
        self._force: Tensor | None = None
        self._events: dict[str, Tensor] = {}
        self._x: Tensor | None = None

    @property
    def num_groups(self) -> int:
        return int(np.unique(self._groups).size)

    def _ctx(self, ctx: StepContext) -> StepContext:
        return StepContext(ctx.t, self._graph, ctx.params, ctx.sampler, ctx.dt, ctx.replicates, ctx.dtype, ctx.seed,
                           self._rngs)

    def online(self, t: int, round_index: int, dropout: float) -> bool:
        """Whether this agent takes part in a round (offline with probability ``dropout``, its own draw)."""
        if dropout <= 0:
            return True
        u = self._rngs[next(iter(self._rngs))].uniform(t, stream_id(DROPOUT_STREAM) + round_index, torch.float64)
        return bool(u[0, 0] >= dropout)

    def contribution(self, ctx: StepContext, emission: Process, public: Mapping, num_groups: int,
                     withheld: np.ndarray | None) -> np.ndarray:
        """Its emission, computed here, added into its venues' groups: ``[G, R]`` float64."""
        out = emission(self._ctx(ctx), self._state, dict(public))
        x = out.fields[emission.target].detach().to(torch.float64).cpu().numpy().reshape(-1)  # [R]
        vec = np.zeros((num_groups, x.size), dtype=np.float64)
        np.add.at(vec, self._groups, self._weights[:, None] * x[None, :])
        if withheld is not None:
            vec[withheld] = 0.0
        return vec

    def receive(self, force: Tensor) -> None:
        """The public aggregate it needs: its force of infection ``[1, R]``."""
        self._force = force

    def update(self, ctx: StepContext, update: Process, public: Mapping) -> None:
        """Its own update process on its own row, with its own draws."""
        fields = dict(public)
        fields[update.force] = self._force
        out = update(self._ctx(ctx), self._state, fields)
        self._state = {**self._state, **out.state}
        self._events = out.events

    def entries(self, keys: Sequence[str], events: Sequence[str]) -> np.ndarray:
        """Its state and events flattened, ``[entries, R]`` (what the observables round sums)."""
        parts = []
        for key in keys:
            v = self._state[key].detach().to(torch.float64)
            parts.append(v.reshape(1, v.size(1), -1)[0].T)  # [per-row size, R]
        for key in events:
            v = self._events.get(key)
            parts.append(torch.zeros(1, parts[0].size(1), dtype=torch.float64) if v is None
                         else torch.as_tensor(v, dtype=torch.float64).reshape(1, -1))
        return torch.cat(parts, 0).cpu().numpy()

    def set_events(self, events: Mapping[str, Tensor]) -> None:
        self._events = dict(events)

    def __repr__(self) -> str:  # nothing of the state
        return f"PrivateClient(uid={self.uid})"


# -- statistics -----------------------------------------------------------------------------------------------
@dataclass
class _Stats:
    runs: int = 0
    rounds: int = 0
    contributors: list = field(default_factory=list)
    dropouts: int = 0
    withheld: int = 0
    upload_bytes: int = 0
    steps: int = 0

    def record(self, contributors: int, dropouts: int, withheld: int, nbytes: int) -> None:
        self.rounds += 1
        self.contributors.append(contributors)
        self.dropouts += dropouts
        self.withheld += withheld
        self.upload_bytes += nbytes


# -- the configuration and one run's pool --------------------------------------------------------------------
class PrivateAgents:
    r"""Which agents are private, and how their sums are aggregated and released (module docstring).

    Args:
        fraction (float, optional): each agent of ``node_type`` is private
            with this probability, by a counter-based draw of its uid
            (stream ``privacy.select``, keyed by ``selection_seed``, so a
            calibration's iterations keep one set).
        attribute (str, optional): instead, a node attribute of ``node_type``
            (0/1 or boolean) marking the private agents.
        min_group (int): :math:`k`, the fewest contributors a released sum
            may have (at least 3). (default: 3)
        small_groups (str): the rule for venues with fewer than ``min_group``
            private members, ``refuse`` or ``merge``. (default: ``merge``)
        frac_bits (int): fixed-point fraction bits; resolution
            :math:`2^{-\text{frac\_bits}}`. (default: 32)
        clip (float): the largest encoded value (a contribution
            :math:`w_{jv} x_j`, or a state entry); a larger one is refused. (default: 8.0)
        dropout (float): probability an agent is offline in a round. (default: 0)
        threshold (int, optional): the Shamir threshold of each round, above
            half a neighbourhood; ``None``: half of it plus one.
        neighbours (int, optional): the SecAgg+ degree of each round (an
            even number; :func:`~lpm_graph.privacy.secure_sum`); ``None``:
            every other contributor (the round's cost grows as its square).
        noise_multiplier (float, optional): :math:`z`: discrete Gaussian
            noise of scale :math:`z\Delta_2` on the released sums; ``None``: no noise.
        grouped_release (bool): release the totals by the update's grouping
            (age group) where a group has ``min_group`` private agents;
            ``False``: one total of all (with noise, one noisy total instead
            of one per group). (default: ``True``)
        noise_on (str): which sums get the noise: ``released`` (the
            totals of the observables round, what a run publishes) or
            ``all`` (the venue sums of the contribution round too, which the
            aggregator otherwise learns exactly, in groups of at least
            ``min_group``). (default: ``released``)
        delta (float): the :math:`\delta` of the reported :math:`(\varepsilon, \delta)`. (default: 1e-6)
        selection_seed (int): keys the ``fraction`` draw. (default: 0)
        node_type (str): the private agents' node type. (default: ``person``)
    """

    def __init__(self, fraction: float | None = None, attribute: str | None = None, min_group: int = 3,
                 small_groups: str = "merge", frac_bits: int = 32, clip: float = 8.0, dropout: float = 0.0,
                 threshold: int | None = None, neighbours: int | None = None, noise_multiplier: float | None = None,
                 noise_on: str = "released", grouped_release: bool = True, delta: float = 1e-6,
                 selection_seed: int = 0, node_type: str = "person"):
        if (fraction is None) == (attribute is None):
            raise PrivacyConfigError("privacy: give exactly one of privacy.private_fraction (a probability) and "
                                     f"privacy.attribute (a node attribute marking the private agents), got "
                                     f"fraction={fraction!r}, attribute={attribute!r}")
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0 <= fraction <= 1):
            raise PrivacyConfigError(f"privacy.private_fraction must be a probability in [0, 1], got {fraction!r}")
        if not (isinstance(min_group, int) and not isinstance(min_group, bool) and min_group >= 3):
            raise PrivacyConfigError(f"privacy.min_group must be an integer of at least 3 (a sum of two reveals each "
                                     f"value to the other party), got {min_group!r}")
        if small_groups not in SMALL_GROUPS:
            raise PrivacyConfigError(f"privacy.small_groups must be one of {list(SMALL_GROUPS)}, got {small_groups!r}")
        if not (isinstance(frac_bits, int) and 0 <= frac_bits <= 52):
            raise PrivacyConfigError(f"privacy.frac_bits must be an integer in [0, 52], got {frac_bits!r}")
        if not (isinstance(clip, (int, float)) and clip >= 1):
            raise PrivacyConfigError(f"privacy.clip must be a number of at least 1 (state entries are in [0, 1]), "
                                     f"got {clip!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise PrivacyConfigError(f"privacy.dropout must be a probability in [0, 1), got {dropout!r}")
        if threshold is not None and not (isinstance(threshold, int) and threshold >= min_group):
            raise PrivacyConfigError(f"privacy.threshold must be null or an integer of at least min_group={min_group}, "
                                     f"got {threshold!r}")
        if noise_multiplier is not None and not (isinstance(noise_multiplier, (int, float))
                                                 and noise_multiplier > 0):
            raise PrivacyConfigError(f"privacy.noise_multiplier must be null (no noise) or a positive number, "
                                     f"got {noise_multiplier!r}")
        if noise_on not in NOISE_ON:
            raise PrivacyConfigError(f"privacy.noise_on must be one of {list(NOISE_ON)}, got {noise_on!r}")
        self.noise_on = noise_on
        self.grouped_release = bool(grouped_release)
        self.fraction = None if fraction is None else float(fraction)
        self.attribute = attribute
        self.min_group = int(min_group)
        self.small_groups = small_groups
        self.frac_bits, self.clip = int(frac_bits), float(clip)
        self.dropout = float(dropout)
        self.threshold = threshold
        self.neighbours = neighbours
        self.noise_multiplier = None if noise_multiplier is None else float(noise_multiplier)
        self.node_type = node_type
        self.selection_seed = int(selection_seed)
        from lpm_graph.privacy.dp import ZCDPAccountant
        self.accountant = ZCDPAccountant(float(delta))
        self.stats = _Stats()
        self.run: _Run | None = None
        self.emission = self.transmission = self.update = None
        self._encoding = None

    @property
    def resolution(self) -> float:
        return 2.0 ** -self.frac_bits

    @property
    def encoding(self):
        if self._encoding is None:
            from lpm_graph.privacy.encoding import FixedPoint
            self._encoding = FixedPoint(self.frac_bits, self.clip)
        return self._encoding

    def attach(self, emission: Process, transmission: Process, update: Process) -> None:
        self.emission, self.transmission, self.update = emission, transmission, update

    # -- which agents --------------------------------------------------------
    def select(self, graph) -> Tensor:
        """``[N]`` bool: the private agents of the graph."""
        nt = self.node_type
        if self.attribute is not None:
            store = graph.data[nt]
            if self.attribute not in store:
                raise PopulationGraphError(f"privacy.attribute={self.attribute!r}: node type {nt!r} has no such "
                                           f"attribute (it has {sorted(k for k in store.keys())}); add it, or use "
                                           "privacy.private_fraction")
            flag = torch.as_tensor(store[self.attribute])
            if flag.dim() != 1 or flag.numel() != graph.num_nodes[nt]:
                raise PopulationGraphError(f"privacy.attribute {nt}.{self.attribute} must have one value per node "
                                           f"([{graph.num_nodes[nt]}]), got shape {tuple(flag.shape)}")
            values = set(torch.unique(flag.to(torch.float64)).tolist())
            if not values <= {0.0, 1.0}:
                raise PopulationGraphError(f"privacy.attribute {nt}.{self.attribute} must be 0/1 or boolean, got "
                                           f"values {sorted(values)[:5]}")
            return flag.to(torch.bool).to(graph.device)
        rng = CounterRNG(graph.uid[nt], self.selection_seed, 1, nt)
        return rng.uniform(0, SELECT_STREAM, torch.float64)[:, 0] < self.fraction

    # -- a run ---------------------------------------------------------------
    def start(self, ctx: StepContext, initial: Output) -> Output:
        """Set up one run's clients from the initial state; returns it with the private rows released."""
        self.run = _Run(self, ctx, initial)
        self.stats.runs += 1
        return self.run.initial

    def force_bound(self, ctx: StepContext) -> Tensor:
        """``[N]`` the bound on each person's force-of-infection error from the quantisation (module docstring),
        at the context's parameters (the venue transmission's betas and contact scales 1)."""
        if self.run is None:
            raise RuntimeError("PrivateAgents.force_bound needs a run started (Model.forward)")
        return self.run.force_bound(ctx)

    def report(self) -> dict:
        s = self.stats
        out = {"private_agents": self.run.n if self.run else 0, "min_group": self.min_group,
               "small_groups": self.small_groups, "runs": s.runs, "rounds": s.rounds,
               "contributors_per_round": ({"min": int(min(s.contributors)), "max": int(max(s.contributors)),
                                           "mean": float(np.mean(s.contributors))} if s.contributors else {}),
               "dropouts": s.dropouts, "withheld_group_entries": s.withheld,
               "payload_bytes_per_agent_per_step": self.run.payload_bytes(self.run.replicates) if self.run else 0,
               "quantisation": {"frac_bits": self.frac_bits, "resolution": self.resolution, "clip": self.clip}}
        if self.run is not None:
            out["groups"] = self.run.groups.count
            out["merged_venues"] = dict(self.run.groups.merged)
            out["release_groups"] = list(self.run.release_labels)
        if self.noise_multiplier is not None:
            out["differential_privacy"] = {"noise_multiplier": self.noise_multiplier, "noise_on": self.noise_on,
                                           **self.accountant.report()}
        return out


class _Run:
    """One run's private side: the clients, the groups, the aggregator's bookkeeping."""

    def __init__(self, agents: PrivateAgents, ctx: StepContext, initial: Output):
        self.agents = agents
        graph = ctx.graph
        nt = agents.node_type
        tr = agents.transmission
        self.mask = agents.select(graph)                                      # [N] bool
        self.rows = self.mask.nonzero().flatten()                             # private rows
        self.n = int(self.rows.numel())
        if self.n < agents.min_group:
            raise PrivacyConfigError(f"privacy: {self.n} private agents of {graph.num_nodes[nt]} {nt} nodes, fewer "
                                     f"than privacy.min_group={agents.min_group}: their totals cannot be released; "
                                     "raise privacy.private_fraction or mark more agents")
        stack = graph.stack(tr.edge_types)
        self.stack = stack
        adj_t = stack.adjacency.T                                             # [N, V]
        crow = adj_t.csr.crow_indices().to(torch.int64).cpu()
        col = adj_t.csr.col_indices().to(torch.int64).cpu()
        val = adj_t.csr.values().to(torch.float64).cpu()
        rows = self.rows.cpu().tolist()
        e_rows, e_members, e_weights, per_client = [], [], [], []
        for r in rows:
            lo, hi = int(crow[r]), int(crow[r + 1])
            per_client.append((col[lo:hi].numpy(), val[lo:hi].numpy()))
            e_rows.append(col[lo:hi].numpy())
            e_members.append(np.full(hi - lo, r))
            e_weights.append(val[lo:hi].numpy())
        def cat(xs, dt):
            return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

        names = [et[2] for et in stack.edge_types]
        self.groups = aggregation_groups(cat(e_rows, np.int64), cat(e_members, np.int64), cat(e_weights, np.float64),
                                         stack.type_index.cpu().numpy(), names, stack.num_rows, agents.min_group,
                                         agents.small_groups)
        self.group_members = [set() for _ in range(self.groups.count)]
        self.replicates = ctx.replicates
        uid = graph.uid[nt].cpu()
        codes = {g: graph.group_index(g).cpu() for g in graph.groupings if graph.groupings[g].node_type == nt}
        update = agents.update
        self.state_keys = [s.key for s in update.state_specs()]
        self.event_keys = [e.key for e in update.event_specs()]
        self.clients: list[PrivateClient] = []
        for i, (r, (venues, weights)) in enumerate(zip(rows, per_client)):
            gids = self.groups.of_row[venues]
            for g in np.unique(gids):
                self.group_members[g].add(i)
            state = {k: initial.state[k][r:r + 1].detach().clone() for k in self.state_keys}
            c = PrivateClient(int(uid[r]), nt, gids, weights, {g: int(v[r]) for g, v in codes.items()}, state,
                              ctx.seed, ctx.replicates, graph.device)
            c.set_events({k: v[r:r + 1] for k, v in initial.events.items() if isinstance(v, Tensor)})
            self.clients.append(c)
        self.max_groups = max((c.num_groups for c in self.clients), default=1)
        self.release_of, self.release_labels = self._release_groups(
            graph, getattr(update, "grouping", None) if agents.grouped_release else None)
        self.rows_dev = self.rows.to(graph.device)
        # what each step released, by step: a checkpointed step recomputed in the backward pass replays it
        # (the clients have moved on; a second round would also spend privacy again)
        self._sums: dict[int, Tensor] = {}
        self._totals: dict[int, np.ndarray] = {}
        self.initial = self.release(ctx, initial, initial_step=True)

    def _release_groups(self, graph, grouping: str | None) -> tuple[np.ndarray, list[str]]:
        """Each private agent's release group: its group of the update's grouping (age group...) where that has at
        least k private agents; the others pooled into one group (joining the smallest full one if the pool has
        fewer than k); one group of everyone without a grouping."""
        k = self.agents.min_group
        if grouping is None or grouping not in graph.groupings:
            return np.zeros(self.n, dtype=np.int64), ["all"]
        codes = graph.group_index(grouping).cpu().numpy()[self.rows.cpu().numpy()]
        labels = graph.group_labels(grouping)
        values, counts = np.unique(codes, return_counts=True)
        full = [int(v) for v, c in zip(values, counts) if c >= k]
        names = [f"{grouping} {labels[v]}" for v in full]
        of = np.full(self.n, -1, dtype=np.int64)
        for g, v in enumerate(full):
            of[codes == v] = g
        rest = of < 0
        if rest.any():
            if rest.sum() >= k or not full:
                of[rest] = len(full)
                names.append(f"{grouping} other")
            else:  # too few to be a group of their own: they join the smallest full group
                g = int(np.argmin([(of == g).sum() for g in range(len(full))]))
                of[rest] = g
                names[g] += " and others"
        return of, names

    # -- the protocol ----------------------------------------------------------
    def _aggregate(self, vectors: dict[int, np.ndarray], sensitivity: float, noised: bool) -> np.ndarray:
        """The secure sum of the live clients' float vectors (encoded, capacity checked, noised if ``noised``)."""
        from lpm_graph.privacy.secagg import secure_sum

        a = self.agents
        enc = a.encoding
        shape = next(iter(vectors.values())).shape
        n = len(vectors)
        sigma = None if a.noise_multiplier is None or not noised else a.noise_multiplier * sensitivity
        # the noise party's input is taken to lie within NOISE_TAILS sigma: the margin of the sum's capacity (a
        # larger draw, probability below e^-200, is refused by the decoding, never wrapped)
        margin = 0 if sigma is None else math.ceil(NOISE_TAILS * sigma)
        enc.check_capacity(n, margin)
        inputs = {}
        for cid, vec in vectors.items():
            if vec.size and float(np.abs(vec).max()) > a.clip:
                worst = float(np.abs(vec).max())
                raise PrivacyConfigError(f"privacy.clip={a.clip:g}: a private agent's value {worst:g} "
                                         "exceeds the fixed-point range (values are refused, never clipped); raise "
                                         "privacy.clip")
            inputs[cid] = enc.encode(vec.reshape(-1))
        if sigma is not None:
            from lpm_graph.privacy.dp import DiscreteGaussian

            noise = DiscreteGaussian(sigma).samples(int(np.prod(shape)))
            inputs[max(vectors) + 1] = np.array([z % (1 << 64) for z in noise], dtype=np.uint64)  # the noise party
            a.accountant.spend(sensitivity, sigma, int(np.prod(shape)))
        hood = len(inputs) if a.neighbours is None or a.neighbours >= len(inputs) - 1 else a.neighbours + 1
        threshold = a.threshold if a.threshold is not None else hood // 2 + 1
        total = secure_sum(inputs, min_clients=a.min_group, threshold=threshold, neighbours=a.neighbours)
        return np.asarray(enc.decode_sum(total, n, margin=margin), dtype=np.float64).reshape(shape)

    def _round(self, t: int, index: int) -> tuple[list[int], np.ndarray | None]:
        """The live clients of a round and the groups withheld (fewer than k live contributors)."""
        a = self.agents
        live = [i for i, c in enumerate(self.clients) if c.online(t, index, a.dropout)]
        if len(live) < a.min_group:
            raise PrivacyConfigError(f"privacy: only {len(live)} of {self.n} private agents online at step {t}, "
                                     f"fewer than privacy.min_group={a.min_group}; lower privacy.dropout")
        withheld = None
        if len(live) < self.n:
            alive = set(live)
            short = [g for g, m in enumerate(self.group_members) if len(m & alive) < a.min_group]
            withheld = np.asarray(short, dtype=np.int64) if short else None
        return live, withheld

    def public(self, fields: Mapping, process: Process, row: int) -> dict:
        """The public fields of one row that a client's process reads (per-person fields sliced to its row)."""
        from lpm_graph.core.state import Read

        n = self.mask.numel()
        out = {}
        for r in map(Read.of, process.reads()):
            v = fields.get(r.key)
            if v is None:
                continue
            if isinstance(v, Tensor) and v.dim() and v.size(0) == n and r.key.startswith(self.agents.node_type + "."):
                v = v[row:row + 1]
            out[r.key] = v
        return out

    def contributions(self, ctx: StepContext, fields: Mapping) -> Tensor:
        """Round 1 of a step: the private venue sums ``[V, R]`` (decoded, shared over merged venues)."""
        if ctx.t in self._sums:
            return self._sums[ctx.t]
        a = self.agents
        live, withheld = self._round(ctx.t, 0)
        G = self.groups.count
        vectors = {}
        rows = self.rows.tolist()
        for i in live:
            c = self.clients[i]
            vectors[c.uid] = c.contribution(ctx, a.emission, self.public(fields, a.emission, rows[i]), G, withheld)
        sens = a.clip * 2.0 ** a.frac_bits * math.sqrt(self.max_groups * ctx.replicates)
        noised = a.noise_multiplier is not None and a.noise_on == "all"
        sums = self._aggregate(vectors, sens, noised)                          # [G, R]
        R = ctx.replicates
        nbytes = G * R * 8
        self.agents.stats.record(len(live), self.n - len(live), 0 if withheld is None else int(withheld.size) * R,
                                 nbytes * len(live))
        if noised:
            sums = np.maximum(sums, 0.0)
        per_row = np.zeros((self.stack.num_rows, R), dtype=np.float64)
        has = self.groups.of_row >= 0
        per_row[has] = sums[self.groups.of_row[has]] * self.groups.share[has, None]
        self._sums[ctx.t] = torch.as_tensor(per_row, dtype=ctx.dtype, device=ctx.graph.device)
        return self._sums[ctx.t]

    def deliver(self, t: int, force: Tensor) -> None:
        """Broadcast: each private agent's force of infection (public: venue pressures and its membership)."""
        if t in self._totals:
            return
        f = force.detach().index_select(0, self.rows_dev)
        for i, c in enumerate(self.clients):
            c.receive(f[i:i + 1])

    def step(self, ctx: StepContext, fields: Mapping, out: Output) -> Output:
        """Each client's own update, then round 2: the released totals replace the simulator's private rows."""
        a = self.agents
        if ctx.t not in self._totals:
            rows = self.rows.tolist()
            for i, c in enumerate(self.clients):
                c.update(ctx, a.update, self.public(fields, a.update, rows[i]))
            self.agents.stats.steps += 1
        return self.release(ctx, out)

    def release(self, ctx: StepContext, out: Output, initial_step: bool = False) -> Output:
        """The observables round: totals of the private state and events by release group (at least k agents
        each), spread over the private rows of each group."""
        if ctx.t in self._totals and not initial_step:
            totals, live, of = self._totals[ctx.t]
        else:
            live, _ = self._round(ctx.t, 2 if initial_step else 1)
            of = self.release_of
            n_groups = len(self.release_labels)
            if len(live) < self.n and min(np.bincount(of[live], minlength=n_groups)) < self.agents.min_group:
                of = np.zeros(self.n, dtype=np.int64)  # a group short of k live agents: this round, one group
                n_groups = 1
            vectors = {}
            for i in live:
                e = self.clients[i].entries(self.state_keys, self.event_keys)            # [entries, R]
                block = np.zeros((n_groups, *e.shape))
                block[of[i]] = e
                vectors[self.clients[i].uid] = block.reshape(-1, e.shape[1])
            width = next(iter(vectors.values())).shape[0] // n_groups
            sens = 2.0 ** self.agents.frac_bits * math.sqrt(width * ctx.replicates)  # one agent moves one block
            totals = self._aggregate(vectors, sens, True).reshape(n_groups, width, -1)  # [groups, entries, R]
            nbytes = n_groups * width * ctx.replicates * 8 * len(live)
            self.agents.stats.record(len(live), self.n - len(live), 0, nbytes)
            if not initial_step:
                self._totals[ctx.t] = (totals, live, of)
        counts = np.bincount(of[live], minlength=totals.shape[0]).astype(np.float64)
        per_agent = totals[of] / counts[of][:, None, None]                            # [n, entries, R]
        state, events = dict(out.state), dict(out.events)
        at = 0
        for key in self.state_keys:
            v = out.state[key]
            width = int(np.prod(v.shape[2:])) if v.dim() > 2 else 1
            value = torch.as_tensor(per_agent[:, at:at + width].transpose(0, 2, 1).copy(), dtype=v.dtype,
                                    device=v.device)                                    # [n, R, width]
            at += width
            state[key] = _assign(v, self.rows_dev, value.reshape(self.n, *v.shape[1:]))
        for key in self.event_keys:
            value = torch.as_tensor(per_agent[:, at].copy(), dtype=ctx.dtype, device=ctx.graph.device)  # [n, R]
            at += 1
            v = out.events.get(key)
            if v is None or not isinstance(v, Tensor) or v.dim() < 2:
                continue
            events[key] = _assign(v, self.rows_dev, value.to(v.dtype))
        return Output(state=state, fields=dict(out.fields), events=events)

    def force_bound(self, ctx: StepContext) -> Tensor:
        tr = self.agents.transmission
        stack = self.stack
        types = [et[2] for et in stack.edge_types]
        betas = torch.stack([tr.value(ctx, f"beta_{vt}") for vt in types]).to(torch.float64).cpu()
        rate = betas.index_select(0, stack.type_index.cpu())
        if tr.normalize:
            rate = rate * stack.inverse_weight.to(torch.float64).cpu()
        g = self.groups
        contributors = np.where(g.of_row >= 0, g.size[np.maximum(g.of_row, 0)], 0)
        err = rate * torch.as_tensor(g.share * contributors * (self.agents.resolution / 2))   # [V]
        adj_t = stack.adjacency.T                                                            # [N, V]
        person = adj_t.rows().cpu()
        venue = adj_t.csr.col_indices().to(torch.int64).cpu()
        w = adj_t.csr.values().to(torch.float64).cpu()
        return torch.zeros(adj_t.shape[0], dtype=torch.float64).index_add_(0, person, w * err[venue])

    def payload_bytes(self, replicates: int) -> int:
        """The bytes of one private agent's uploads in one step: its two vectors of 64-bit words."""
        entries = sum(int(np.prod(self.clients[0]._state[k].shape[2:])) for k in self.state_keys) + len(self.event_keys)
        return 8 * replicates * (self.groups.count + entries * len(self.release_labels))


def _assign(v: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    """``v`` with the private ``rows`` replaced by ``values`` (one per row), out of place."""
    out = v.detach().clone() if not v.requires_grad else v.clone()
    out[rows] = values.to(v.dtype)
    return out


# -- the processes --------------------------------------------------------------------------------------------
class _Wrapped(Process):
    """A process standing in for another: same name, role and declarations (so the model's wiring, parameter
    namespaces and streams are the inner process's)."""

    def __init__(self, inner: Process, agents: PrivateAgents):
        super().__init__(inner.name)
        self.inner = inner
        self.agents = agents
        self.role = inner.role
        self.default_name = inner.default_name
        self.explicit_name = inner.explicit_name

    def state_specs(self):
        return self.inner.state_specs()

    def field_specs(self):
        return self.inner.field_specs()

    def event_specs(self):
        return self.inner.event_specs()

    def param_specs(self):
        return self.inner.param_specs()

    def reads(self):
        return self.inner.reads()

    def streams(self):
        return self.inner.streams()

    def requirements(self):
        return self.inner.requirements()

    def observables(self):
        return self.inner.observables()

    def outcomes(self):
        return self.inner.outcomes()

    def workspace(self):
        return self.inner.workspace()

    def saved(self):
        return self.inner.saved()

    def layout_copies(self, written):
        return self.inner.layout_copies(written)

    def check_graph(self, graph) -> None:
        self.inner.check_graph(graph)

    def compile_kernel(self, enabled: bool = True) -> None:
        self.inner.compile_kernel(enabled)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = super().__getattr__("inner")
            return getattr(inner, name)


class _PressurePlusPrivate(torch.nn.Module):
    """The transmission's venue sum with the private group sums added before the per-venue rate."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.extra: Tensor | None = None

    def forward(self, x, adj, scale=None, **kwargs):
        y = self.inner(x, adj, **kwargs)
        if self.extra is not None:
            y = y + self.extra
        return y if scale is None else y * (scale.unsqueeze(-1) if scale.dim() == 1 and y.dim() == 2 else scale)


class PrivateTransmission(_Wrapped):
    """The venue transmission with the private agents' sums from the contribution round (module docstring)."""

    def __init__(self, inner: Process, agents: PrivateAgents):
        super().__init__(inner, agents)
        self.pressure_sum = _PressurePlusPrivate(inner.pressure)
        inner.pressure = self.pressure_sum

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        inner = self.inner
        run = self.agents.run
        if any(fields.get(k) is not None for k in inner.decision_keys):
            raise PrivacyConfigError(f"process {self.name!r}: private agents do not take behaviour decisions yet (a "
                                     f"decision field of {inner.decision_keys} is written); run them with "
                                     "behavior=none")
        x = fields[inner.source]
        masked = dict(fields)
        masked[inner.source] = x * (~run.mask).to(x.dtype).unsqueeze(1)   # the private rows' values are not theirs
        self.pressure_sum.extra = run.contributions(ctx, fields)
        try:
            out = inner(ctx, state, masked)
        finally:
            self.pressure_sum.extra = None
        run.deliver(ctx.t, out.fields[inner.target])
        return out


class PrivateUpdate(_Wrapped):
    """The update run by every private agent on its own row; the simulator's private rows hold released totals."""

    def init(self, ctx: StepContext) -> Output:
        return self.agents.start(ctx, self.inner.init(ctx))

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        out = self.inner(ctx, state, fields)
        return self.agents.run.step(ctx, fields, out)

    def report(self) -> dict:
        inner = self.inner.report()
        return {**inner, "privacy": self.agents.report()}


class PrivateModel(Model):
    """A :class:`~lpm_graph.core.Model` whose venue epidemic has private agents (module docstring).

    Args:
        privacy (PrivateAgents): who is private and how sums are released.
        **kwargs: the arguments of :class:`~lpm_graph.core.Model`.

    The model must hold one :class:`~lpm_graph.models.epidemic.VenueTransmission`
    over the private agents' node type, the emission that writes its source
    field and the update that reads its force; no other process may read
    the update's state (the private agents' compartments are not the
    simulator's to read).
    """

    def __init__(self, privacy: PrivateAgents, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(privacy, PrivateAgents):
            raise ConfigError(f"model.privacy must be a lpm_graph.privacy.agents.PrivateAgents, "
                              f"got {type(privacy).__name__}")
        from lpm_graph.models.epidemic import VenueTransmission

        order = self.order
        venues = [p for p in order if isinstance(p, VenueTransmission)]
        if len(venues) != 1:
            raise ConfigError(f"privacy: private agents need exactly one VenueTransmission; this model has "
                              f"{[f'{p.name} ({type(p).__name__})' for p in order if p.role == 'interaction']}; "
                              "use a venue model (model=seir, sir, seird, sis)")
        others = [p for p in order if p is not venues[0] and any(f.key == venues[0].target for f in p.field_specs())]
        if others:
            raise ConfigError(f"privacy: {[p.name for p in others]} also write {venues[0].target}; private agents "
                              "take part in the venue transmission only (a contact layer would need their contacts "
                              "aggregated too); remove them or run without private agents")
        tr = venues[0]
        if tr.host != privacy.node_type:
            raise ConfigError(f"privacy.node_type={privacy.node_type!r} but the transmission's hosts are {tr.host!r}")
        emitters = [p for p in order if any(f.key == tr.source for f in p.field_specs())]
        updates = [p for p in order if p.role == "update" and tr.target in {r if isinstance(r, str) else r.key
                                                                            for r in p.reads()}]
        if len(emitters) != 1 or len(updates) != 1:
            raise ConfigError(f"privacy: needs one emission writing {tr.source} and one update reading {tr.target}; "
                              f"found {[p.name for p in emitters]} and {[p.name for p in updates]}")
        emission, update = emitters[0], updates[0]
        owned = {s.key for s in update.state_specs()}
        for p in order:
            if p is update or p is emission:
                continue
            keys = {r if isinstance(r, str) else r.key for r in p.reads()}
            if keys & owned:
                raise ConfigError(f"privacy: process {p.name!r} ({type(p).__name__}) reads {sorted(keys & owned)}, "
                                  f"the private agents' own state, which the simulator cannot read; remove it or run "
                                  "without private agents")
        privacy.attach(emission, tr, update)
        self.privacy = privacy
        for i, p in enumerate(self.processes):
            if p is tr:
                self.processes[i] = PrivateTransmission(tr, privacy)
            elif p is update:
                self.processes[i] = PrivateUpdate(update, privacy)
        for i, p in enumerate(self.environment):
            if p is update or p is tr:
                raise ConfigError("privacy: the transmission and update must be model.processes")
