r"""Declarations of what a process owns, computes and emits: state, fields, events.

**State** is what persists from one step to the next: a dict of tensors
``[N_type, R, *shape]`` (``R`` replicate columns), keyed ``"<node type>.<name>"``
(``"person.opinion"``, ``"retailer.stock"``).  Each entry has exactly one owner, the
process that declares it with a :class:`StateSpec`; nothing is written in
place — a step returns new tensors.  Its *kind* says what its values mean,
and so how it is observed:

=============  ==================================================  ===================
kind           values                                              observed as
=============  ==================================================  ===================
indicator      0/1 per node (in expected mode: a probability)      count (sum)
categorical    integer codes ``0..K-1`` of ``categories``          count per category
continuous     any real (opinion, income, stock level)             mean
count          non-negative whole numbers (units, days left)       sum
=============  ==================================================  ===================

**Fields** are what a step computes and later processes of the same step
read: aggregated messages (``retailer.incoming_stock``), behaviour
decisions (``person.stays_home``), environment factors
(``school.contact_scale``).  A field is produced once per step — or, when
its :class:`FieldSpec` says how (``combine="sum"`` or ``"product"``), by
several processes whose contributions combine: interactions that each add
their messages, interventions that each scale a factor.
A field's scope is a node type (per-node values ``[N, R]``, or a scalar
broadcast to every node) or any other name (a scalar, e.g. a contact
relation's scale).

**Events** are per-node counts of what happened in a step
(``person.decisions_changed``, ``retailer.units_shipped``): ``[N, R]`` tensors
that observables sum, never state.
"""
from __future__ import annotations

from dataclasses import dataclass

from lpm_graph.errors import ConfigError

__all__ = ["StateSpec", "FieldSpec", "EventSpec", "Read", "KINDS", "COMBINE", "key"]

KINDS = ("indicator", "categorical", "continuous", "count")
COMBINE = (None, "sum", "product")


def key(node_type: str, name: str) -> str:
    """``"<node type>.<name>"``."""
    return f"{node_type}.{name}"


def _check_name(what: str, node_type: str, name: str) -> None:
    for part, label in ((node_type, "node type"), (name, "name")):
        if not isinstance(part, str) or not part or "." in part:
            raise ConfigError(f"{what}: {label} must be a non-empty string without dots, got {part!r}")


@dataclass(frozen=True)
class StateSpec:
    """A state entry a process owns.

    Args:
        node_type (str): the node type it lives on.
        name (str): its name, unique on the node type.
        kind (str): one of :data:`KINDS`.
        shape (tuple[int, ...]): trailing feature dimensions (``()``: one value
            per node and replicate). (default: ``()``)
        init (float, optional): the initial value everywhere; ``None``: the
            owner sets it in :meth:`~lpm_graph.core.process.Process.init`.
            (default: ``0.0``)
        categories (tuple[str, ...]): labels of a categorical state's codes.
        unit (str): e.g. ``"people"``, ``"units"``, ``"days"``.
        doc (str): one line.
    """

    node_type: str
    name: str
    kind: str
    shape: tuple[int, ...] = ()
    init: float | None = 0.0
    categories: tuple[str, ...] = ()
    unit: str = ""
    doc: str = ""

    def __post_init__(self):
        _check_name("StateSpec", self.node_type, self.name)
        if self.kind not in KINDS:
            raise ConfigError(f"state {self.key}: kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.kind == "categorical" and not self.categories:
            raise ConfigError(f"state {self.key}: a categorical state needs its categories")

    @property
    def key(self) -> str:
        return key(self.node_type, self.name)


@dataclass(frozen=True)
class FieldSpec:
    """A field a process writes.

    Args:
        scope (str): the node type it lives on, or another name for a scalar field.
        name (str): its name.
        per_node (bool): ``[N, R]`` values (else a scalar). (default: ``True``)
        combine (str, optional): how several writers combine — ``"sum"`` or
            ``"product"`` — or ``None``: one writer only. (default: ``None``)
        neutral (float): what a reader sees when no process writes the field
            and it reads it as optional: 0 for sums, 1 for products.
        unit (str), doc (str).
    """

    scope: str
    name: str
    per_node: bool = True
    combine: str | None = None
    unit: str = ""
    doc: str = ""

    def __post_init__(self):
        _check_name("FieldSpec", self.scope, self.name)
        if self.combine not in COMBINE:
            raise ConfigError(f"field {self.key}: combine must be one of {list(COMBINE)}, got {self.combine!r}")

    @property
    def key(self) -> str:
        return key(self.scope, self.name)

    @property
    def neutral(self) -> float | None:
        return {"sum": 0.0, "product": 1.0}.get(self.combine)


@dataclass(frozen=True)
class EventSpec:
    """An event a process emits: a per-node count of what happened in a step."""

    node_type: str
    name: str
    unit: str = ""
    doc: str = ""

    def __post_init__(self):
        _check_name("EventSpec", self.node_type, self.name)

    @property
    def key(self) -> str:
        return key(self.node_type, self.name)


@dataclass(frozen=True)
class Read:
    """Something a process reads: a state or field key.

    ``optional`` reads of a field see ``default`` when no process of the model
    writes it (e.g. a susceptibility factor without any intervention: 1);
    optional reads of a state see ``None`` when no process owns it.
    """

    key: str
    optional: bool = False
    default: float | None = None

    @classmethod
    def of(cls, item) -> "Read":
        return item if isinstance(item, Read) else cls(str(item))
