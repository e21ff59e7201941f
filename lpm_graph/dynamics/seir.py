r"""SEIR(D) disease progression: the state update :math:`f`.

Each person is in one compartment, held as one-hot indicator columns
``S, E, I, R`` (and ``D``) of shape ``[N, R]`` (R replicates).  One step of
length :math:`\Delta t`, for person :math:`i` in age group :math:`a(i)`:

.. math::

    p^{\mathrm{inf}}_i &= 1 - \exp(-\sigma_{a(i)}\, e_\sigma\, \lambda_i\, \Delta t)
        && S \to E \\
    p^{\mathrm{onset}}_i &= 1 - \exp(-\Delta t / T^{E}_{a(i)}) && E \to I \\
    p^{\mathrm{end}}_i &= 1 - \exp(-\Delta t / T^{I}_{a(i)})
        && I \to R \text{ (or } D \text{ w.p. } \mu_{a(i)}\text{)}

with force of infection :math:`\lambda_i` from the interaction channels,
relative susceptibility :math:`\sigma`, the environment's susceptibility factor
:math:`e_\sigma`, mean exposed and infectious periods :math:`T^E, T^I` (days;
the time in each compartment is geometric with that mean, in steps of
:math:`\Delta t`) and infection fatality :math:`\mu`.  Transitions are drawn
with :class:`~lpm_graph.dynamics.sampling.Sampler` from the counter-based
uniforms of streams ``infection``, ``onset``, ``removal`` and ``fatality``;
all happen from the compartments at the start of the step.

Parameters read (``model.params``): ``exposed_period``, ``infectious_period``,
``susceptibility``, ``infectiousness``, ``initial_infected_fraction`` and, with
``fatality=True``, ``fatality``; each a scalar or one value per age group.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SEIR"]


def per_person(value: Tensor, age_group: Tensor, dtype: torch.dtype) -> Tensor:
    """A scalar stays a scalar; a per-age-group vector becomes ``[N, 1]``."""
    value = value.to(dtype)
    return value if value.dim() == 0 else value[age_group].unsqueeze(1)


class SEIR(nn.Module):
    """Age-structured SEIR / SEIRD progression.

    Args:
        fatality (bool): add compartment ``D`` with age-specific fatality
            ``fatality`` among those leaving ``I``. (default: ``False``)
        initial_compartment (str): where the initially infected start,
            ``"E"`` or ``"I"``. (default: ``"I"``)
    """

    def __init__(self, fatality: bool = False, initial_compartment: str = "I"):
        super().__init__()
        from lpm_graph.data.validate import ConfigError

        if initial_compartment not in ("E", "I"):
            raise ConfigError(f"SEIR.initial_compartment must be 'E' or 'I', got {initial_compartment!r}")
        self.fatality = bool(fatality)
        self.initial_compartment = initial_compartment
        self.compartments = ("S", "E", "I", "R", "D") if self.fatality else ("S", "E", "I", "R")
        self.param_domains = {
            "exposed_period": "positive",
            "infectious_period": "positive",
            "susceptibility": "nonnegative",
            "infectiousness": "nonnegative",
            "initial_infected_fraction": "probability",
        }
        if self.fatality:
            self.param_domains["fatality"] = "probability"

    def initial_state(self, graph, params, rng, sampler, dtype: torch.dtype) -> dict[str, Tensor]:
        """Seed infections with probability ``initial_infected_fraction`` per person (stream ``seed``, step -1)."""
        n, r = graph.num_people, rng.replicates if rng is not None else 1
        frac = params["initial_infected_fraction"].to(dtype)
        p = per_person(frac, graph.age_group, dtype).expand(n, r) if frac.dim() else frac.expand(n, r)
        u = rng.uniform(-1, "seed", dtype) if sampler.stochastic else None
        seeded = sampler(p, u)
        zero = torch.zeros(n, r, dtype=dtype, device=graph.uid.device)
        comp = {c: zero for c in self.compartments}
        comp["S"] = 1.0 - seeded
        comp[self.initial_compartment] = seeded
        return comp

    def infectiousness(self, state: dict[str, Tensor], graph, params, env) -> Tensor:
        """What each person emits into the interaction channels: :math:`I_i` times relative
        infectiousness times the environment's factor (e.g. isolation)."""
        infectious = state["I"]
        return infectious * per_person(params["infectiousness"], graph.age_group, infectious.dtype) * env.infectiousness

    def forward(self, state: dict[str, Tensor], lam: Tensor, t: int, graph, params, env, rng, sampler,
                dt: float) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One step: returns the new compartments and per-person events ``new_infections``,
        ``new_onsets``, ``new_removals`` (and ``new_deaths``), each ``[N, R]``."""
        S, E, I, R = (state[c] for c in "SEIR")
        dtype, ag = S.dtype, graph.age_group

        def draw(stream: str) -> Tensor | None:
            return rng.uniform(t, stream, dtype) if sampler.stochastic else None

        sus = per_person(params["susceptibility"], ag, dtype) * env.susceptibility
        p_inf = -torch.expm1(-(lam * sus) * dt)
        p_onset = -torch.expm1(-dt / per_person(params["exposed_period"], ag, dtype))
        p_end = -torch.expm1(-dt / per_person(params["infectious_period"], ag, dtype))

        new_inf = S * sampler(p_inf, draw("infection"))
        new_onset = E * sampler(p_onset.expand_as(E), draw("onset"))
        removed = I * sampler(p_end.expand_as(I), draw("removal"))
        events = {"new_infections": new_inf, "new_onsets": new_onset, "new_removals": removed}
        out = {"S": S - new_inf, "E": E + new_inf - new_onset, "I": I + new_onset - removed}
        if self.fatality:
            mu = per_person(params["fatality"], ag, dtype)
            died = removed * sampler(mu.expand_as(I), draw("fatality"))
            events["new_deaths"] = died
            out["R"], out["D"] = R + (removed - died), state["D"] + died
        else:
            out["R"] = R + removed
        return out, events

    def extra_repr(self) -> str:
        return f"compartments={self.compartments}, initial_compartment={self.initial_compartment!r}"
