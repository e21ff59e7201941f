r"""Neural behaviour: a network maps what an agent is and observes to decision probabilities.

For person :math:`i` in replicate :math:`r`, with declared node attributes
:math:`a_i` (e.g. age), standardised over the population, and observed
fields or states :math:`o_{ir}` (e.g. the prevalence in its venues, its own
last decision),

.. math::

    p_{ir} = \sigma\big(f_\phi([a_i, o_{ir}]) + \operatorname{logit} p_0\big)

for any ``nn.Module`` :math:`f_\phi` (configured with ``_target_``; one
logit per decision), applied to all agents and replicates at once as a
``[N, R, F]`` batch, with an offset that makes a network with small output
start near the share :math:`p_0` (``initial``).  The network's initial
weights are a function of ``seed`` (the run's seed: ``seed: ${seed}`` in
``conf/behavior/neural.yaml``), whatever torch's global random state.  Its
weights are parameters of the model (a submodule of the process), so
``task=calibrate`` trains them through the simulator with the learnable
parameters; ``trainable: false`` freezes them.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lpm_graph.behavior.base import Behavior
from lpm_graph.core.graph import Requirements
from lpm_graph.core.process import StepContext
from lpm_graph.errors import ConfigError

__all__ = ["NeuralBehavior", "DecisionMLP"]


class DecisionMLP(nn.Module):
    """A small MLP: ``[..., in_features]`` -> ``[..., out_features]`` logits.

    Args:
        in_features (int), out_features (int): widths of input and output.
        hidden (int | Sequence[int]): hidden widths. (default: 16)
        activation (str): ``"tanh"`` or ``"relu"``. (default: ``"tanh"``)
    """

    def __init__(self, in_features: int, out_features: int = 1, hidden: int | Sequence[int] = 16,
                 activation: str = "tanh"):
        super().__init__()
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        acts = {"tanh": nn.Tanh, "relu": nn.ReLU}
        if activation not in acts:
            raise ConfigError(f"DecisionMLP.activation must be one of {sorted(acts)}, got {activation!r}")
        layers, width = [], int(in_features)
        for w in widths:
            layers += [nn.Linear(width, int(w)), acts[activation]()]
            width = int(w)
        layers.append(nn.Linear(width, int(out_features)))
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


_STANDARDISED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class NeuralBehavior(Behavior):
    """Decisions from a network of node attributes and observations (module docstring).

    Args:
        net (nn.Module): maps ``[N, R, len(features) + len(inputs)]`` to ``[N, R, len(decisions)]`` logits.
        decisions (Sequence[str]): the decisions. (default: ``[stays_home]``)
        features (Sequence[str]): node attributes of ``node_type`` read from the graph (numeric,
            standardised over the nodes). (default: ``[age]``)
        inputs (Sequence[str]): fields written earlier in the step or states read, each ``[N, R]``.
        input_scale (float | Sequence[float]): the inputs are multiplied by this (one number, or one per
            input), so that small shares reach the network's sensitive range. (default: 1)
        initial (float | Mapping[str, float]): the share each decision starts near. (default: 0.1)
        seed (int): seeds the network's initial weights. (default: 0)
        trainable (bool): the network's weights require gradients (``task=calibrate`` fits them).
            (default: ``True``)
        node_type (str), grouping (str), name (str): as :class:`~lpm_graph.behavior.Behavior`.
            (default name ``"neural"``)
    """

    default_name = "neural"

    def __init__(self, net: nn.Module, decisions: Sequence[str] = ("stays_home",), features: Sequence[str] = ("age",),
                 inputs: Sequence[str] = (), input_scale: float | Sequence[float] = 1.0,
                 initial: float | Mapping[str, float] = 0.1, seed: int = 0,
                 trainable: bool = True, node_type: str = "person", grouping: str | None = "age",
                 name: str | None = None):
        super().__init__(decisions, node_type, grouping, name)
        if not isinstance(net, nn.Module):
            raise ConfigError(f"NeuralBehavior.net must be a torch.nn.Module (configured with _target_), got "
                              f"{type(net).__name__}")
        self.features, self.inputs = [str(f) for f in features], [str(k) for k in inputs]
        if not self.features and not self.inputs:
            raise ConfigError("NeuralBehavior needs features (node attributes) or inputs (fields or states)")
        scale = [float(input_scale)] * len(self.inputs) if isinstance(input_scale, (int, float)) else \
            [float(v) for v in input_scale]
        if len(scale) != len(self.inputs):
            raise ConfigError(f"NeuralBehavior.input_scale has {len(scale)} values for {len(self.inputs)} inputs")
        self.input_scale = scale
        width = len(self.features) + len(self.inputs)
        for attr, want in (("in_features", width), ("out_features", len(self.decisions))):
            got = getattr(net, attr, None)
            if isinstance(got, int) and got != want:
                raise ConfigError(f"NeuralBehavior.net.{attr} is {got} but the behaviour gives it {want} "
                                  f"({'features ' + str(self.features) + ' and inputs ' + str(self.inputs) if attr == 'in_features' else 'decisions ' + str(self.decisions)})")
        init = initial if isinstance(initial, Mapping) else {d: initial for d in self.decisions}
        offsets = []
        for d in self.decisions:
            p0 = float(init.get(d, 0.1))
            if not 0.0 < p0 < 1.0:
                raise ConfigError(f"NeuralBehavior.initial.{d} must be a share in (0, 1), got {p0}")
            offsets.append(math.log(p0 / (1.0 - p0)))
        self.register_buffer("offset", torch.tensor(offsets))
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for m in net.modules():
                if m is not net and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            if hasattr(net, "reset_parameters"):
                net.reset_parameters()
        self.net = net
        self.net.requires_grad_(bool(trainable))

    def reads(self):
        return list(self.inputs)

    def requirements(self) -> Requirements:
        req = super().requirements()
        req.need(self.node_type, *self.features)
        return req

    def workspace(self):
        widths = [m.out_features for m in self.net.modules() if isinstance(m, nn.Linear)]
        return {self.node_type: float(len(self.features) + len(self.inputs) + 2 * sum(widths))}

    def _attributes(self, ctx: StepContext, like: Tensor) -> Tensor | None:
        """``[N, F]`` standardised node attributes, computed once per graph and dtype."""
        if not self.features:
            return None
        cache = _STANDARDISED.setdefault(ctx.graph, {})
        name = (tuple(self.features), like.dtype)
        if name not in cache:
            cols = []
            for f in self.features:
                a = ctx.graph.attribute(self.node_type, f)
                if a.dim() != 1:
                    raise ConfigError(f"NeuralBehavior: feature {self.node_type}.{f} must be one number per node, "
                                      f"got shape {tuple(a.shape)}")
                a = a.to(like.dtype)
                cols.append((a - a.mean()) / a.std(unbiased=False).clamp_min(1e-8))
            cache[name] = torch.stack(cols, 1).to(like.device)
        return cache[name]

    def decide(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> dict[str, Tensor]:
        n, R = ctx.graph.num_nodes[self.node_type], ctx.replicates
        like = torch.empty((), dtype=ctx.dtype, device=ctx.graph.device)
        parts = []
        attrs = self._attributes(ctx, like)
        if attrs is not None:
            parts.append(attrs.unsqueeze(1).expand(n, R, attrs.size(1)))
        for k, c in zip(self.inputs, self.input_scale):
            v = fields[k] if k in fields else state[k]
            v = torch.as_tensor(v, dtype=ctx.dtype, device=ctx.graph.device)
            parts.append((v.expand(n, 1) if v.dim() == 0 else v).expand(n, R).unsqueeze(-1) * c)
        z = torch.cat(parts, -1)
        logits = self.net(z.to(self.offset.dtype))
        if logits.shape[:2] != (n, R) or logits.size(-1) != len(self.decisions):
            raise ConfigError(f"NeuralBehavior {self.name!r}: the network maps [{n}, {R}, {z.size(-1)}] to "
                              f"{list(logits.shape)}; it must give [{n}, {R}, {len(self.decisions)}] (one logit per "
                              "decision)")
        p = torch.sigmoid(logits + self.offset).to(ctx.dtype)
        return {d: p[..., i] for i, d in enumerate(self.decisions)}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, decisions={self.decisions}, features={self.features}, inputs={self.inputs}"
