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

``weights`` starts the network from the weights a calibration trained: the
output folder of a ``task=calibrate`` run (or its ``checkpoint.pt``), read
through :func:`lpm_graph.tasks.checkpoint.process_weights` (the file's
SHA-256 digest verified first).  The trained network is the one of the same
architecture in that run (``weights_from`` names its process where several
fit); it must have been trained with the same decisions, features, inputs,
input scale and initial share, since its weights mean nothing with others.
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
        weights (str, optional): a ``task=calibrate`` output folder or its ``checkpoint.pt``: start from the
            network trained there (module docstring). (default: ``None``, the seeded weights)
        weights_from (str, optional): the name of the process in that run whose network to take; needed only
            where several of this architecture were trained. (default: ``None``)
        node_type (str), grouping (str), name (str): as :class:`~lpm_graph.behavior.Behavior`.
            (default name ``"neural"``)
    """

    default_name = "neural"

    def __init__(self, net: nn.Module, decisions: Sequence[str] = ("stays_home",), features: Sequence[str] = ("age",),
                 inputs: Sequence[str] = (), input_scale: float | Sequence[float] = 1.0,
                 initial: float | Mapping[str, float] = 0.1, seed: int = 0,
                 trainable: bool = True, weights: str | None = None, weights_from: str | None = None,
                 node_type: str = "person", grouping: str | None = "age", name: str | None = None):
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
        self.initial = [float(init.get(d, 0.1)) for d in self.decisions]
        for d, p0 in zip(self.decisions, self.initial):
            if not 0.0 < p0 < 1.0:
                raise ConfigError(f"NeuralBehavior.initial.{d} must be a share in (0, 1), got {p0}")
        self.register_buffer("offset", torch.tensor([math.log(p0 / (1.0 - p0)) for p0 in self.initial]))
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for m in net.modules():
                if m is not net and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            if hasattr(net, "reset_parameters"):
                net.reset_parameters()
        self.net = net
        self.weights = None if weights is None else str(weights)
        if weights is not None:
            self._load(self.weights, weights_from)
        self.net.requires_grad_(bool(trainable))

    # -- trained weights -----------------------------------------------------
    def _settings(self, entry: Mapping | None = None) -> dict:
        """What trained weights depend on besides the architecture: of this behaviour, or of a saved config entry
        (its absent keys at this class's defaults)."""
        if entry is None:
            return {"decisions": self.decisions, "features": self.features, "inputs": self.inputs,
                    "input_scale": self.input_scale, "initial": [round(v, 12) for v in self.initial]}
        decisions = [str(d) for d in entry.get("decisions", ["stays_home"])]
        inputs = [str(k) for k in entry.get("inputs", [])]
        scale = entry.get("input_scale", 1.0)
        scale = [float(scale)] * len(inputs) if isinstance(scale, (int, float)) else [float(v) for v in scale]
        initial = entry.get("initial", 0.1)
        init = initial if isinstance(initial, Mapping) else {d: initial for d in decisions}
        return {"decisions": decisions, "features": [str(f) for f in entry.get("features", ["age"])],
                "inputs": inputs, "input_scale": scale,
                "initial": [round(float(init.get(d, 0.1)), 12) for d in decisions]}

    def _load(self, path: str, weights_from: str | None) -> None:
        from lpm_graph.tasks.checkpoint import process_weights

        where = f"NeuralBehavior.weights ({path!r})"
        saved = process_weights(path, field="NeuralBehavior.weights")
        own = {n: tuple(p.shape) for n, p in self.named_parameters()}

        def shapes(entry):
            return {n: tuple(v.shape) for n, v in entry["weights"].items()}

        held = "; ".join(f"{n}: {shapes(e)}" for n, e in saved.items())
        if weights_from is not None:
            if weights_from not in saved:
                raise ConfigError(f"{where}: weights_from={weights_from!r}, but the run trained the weights of "
                                  f"{sorted(saved)}")
            name = weights_from
            if shapes(saved[name]) != own:
                raise ConfigError(f"{where}: the network of {name!r} has weights {shapes(saved[name])}, this one "
                                  f"{own}; configure the same network (net) as that run")
        else:
            fits = [n for n, e in saved.items() if shapes(e) == own]
            if not fits:
                raise ConfigError(f"{where}: no network the run trained has this one's weights {own} (it trained "
                                  f"{held}); configure the same network (net) as that run")
            if len(fits) > 1:
                raise ConfigError(f"{where}: the run trained networks like this one in {fits}; name the one to "
                                  "take with weights_from")
            name = fits[0]
        entry = saved[name]["config"]  # None: a checkpoint without process names, settings unknown
        mine, theirs = self._settings(), self._settings(entry) if entry is not None else self._settings()
        changed = [f"{k}: {theirs[k]} there, {mine[k]} here" for k in mine if mine[k] != theirs[k]]
        if changed:
            raise ConfigError(f"{where}: process {name!r} of that run was trained with other settings "
                              f"({'; '.join(changed)}); use the same ones, or train anew")
        with torch.no_grad():
            for n, p in self.named_parameters():
                p.copy_(saved[name]["weights"][n].to(dtype=p.dtype, device=p.device))

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
