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
uniforms (:class:`~lpm_graph.random.CounterRNG`): infection and onset are
lanes 0 and 1 of stream ``infection``, removal and death lanes 0 and 1 of
stream ``removal`` (in ``float32`` one 64-bit hash per pair); all happen from
the compartments at the start of the step.

The elementwise work is one pure function, :func:`seir_update`, which
``torch.compile`` can fuse into a single pass over the people
(:meth:`SEIR.compile_kernel`, ``PopulationModel(compile=True)``).  Rates are
turned into probabilities on the per-age-group vectors before they are
gathered per person.

Parameters read (``model.params``): ``exposed_period``, ``infectious_period``,
``susceptibility``, ``infectiousness``, ``initial_infected_fraction`` and, with
``fatality=True``, ``fatality``; each a scalar or one value per age group.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from lpm_graph.random import uniform_from_salts, uniform_pair_from_salts

__all__ = ["SEIR", "seir_update"]


def per_person(value: Tensor, age_group: Tensor, dtype: torch.dtype) -> Tensor:
    """A scalar stays a scalar; a per-age-group vector becomes ``[N, 1]`` (one ``index_select``)."""
    value = value.to(dtype)
    return value if value.dim() == 0 else value.index_select(0, age_group).unsqueeze(1)


def seir_update(S: Tensor, E: Tensor, I: Tensor, R: Tensor, D: Tensor | None, lam: Tensor, age_group: Tensor,
                susceptibility: Tensor, env_susceptibility: Tensor | float, p_onset: Tensor, p_end: Tensor,
                mu: Tensor | None, dt: float, keys: tuple[Tensor, Tensor, Tensor] | None,
                sampler) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    r"""The elementwise part of one SEIR(D) step: draws, events, new compartments.

    A pure tensor function (no Python state, no step number: the step enters
    through the salts in ``keys``), so ``torch.compile`` fuses it — the
    per-age-group gathers, the hashing of the random numbers, the sampling and
    the update — into one loop over people (:meth:`SEIR.compile_kernel`).

    Args:
        S, E, I, R, D: compartments ``[N, R]`` (``D`` ``None`` without fatality).
        lam: force of infection ``[N, R]``.
        age_group: age group of each person ``[N]``.
        susceptibility: :math:`\sigma`, scalar or ``[G]``.
        env_susceptibility: the environment's factor :math:`e_\sigma`, a number or ``[N, R]``.
        p_onset, p_end: per-step onset and removal probabilities, scalar or ``[G]``.
        mu: fatality among the removed, scalar or ``[G]`` (``None`` without ``D``).
        dt: step length.
        keys: ``(base, infection salts, removal salts)`` of the counter-based
            generator (:meth:`~lpm_graph.random.CounterRNG.pair_salts`), or
            ``None`` in expected mode.
        sampler: the :class:`~lpm_graph.dynamics.sampling.Sampler`.
    """
    dtype = S.dtype
    coef = per_person(susceptibility * -dt, age_group, dtype)
    if not (isinstance(env_susceptibility, (int, float)) and env_susceptibility == 1):
        coef = coef * env_susceptibility
    p_inf = -torch.expm1(lam * coef)
    if keys is None:
        u_inf = u_onset = u_end = u_death = None
    else:
        base, salt_infection, salt_removal = keys
        u_inf, u_onset = uniform_pair_from_salts(base, salt_infection, dtype)
        if mu is None:
            u_end, u_death = uniform_from_salts(base, salt_removal, dtype), None
        else:
            u_end, u_death = uniform_pair_from_salts(base, salt_removal, dtype)
    new_inf = S * sampler(p_inf, u_inf)
    new_onset = E * sampler(per_person(p_onset, age_group, dtype).expand_as(E), u_onset)
    removed = I * sampler(per_person(p_end, age_group, dtype).expand_as(I), u_end)
    events = {"new_infections": new_inf, "new_onsets": new_onset, "new_removals": removed}
    # in place on fresh sums: autograd saves neither (one temporary less each)
    out = {"S": S - new_inf, "E": (E + new_inf).sub_(new_onset), "I": (I + new_onset).sub_(removed)}
    if mu is not None:
        died = removed * sampler(per_person(mu, age_group, dtype).expand_as(I), u_death)
        events["new_deaths"] = died
        out["R"], out["D"] = R + (removed - died), D + died
    else:
        out["R"] = R + removed
    return out, events


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
        self._update = seir_update

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
        x = infectious * per_person(params["infectiousness"], graph.age_group, infectious.dtype)
        ei = env.infectiousness
        return x if isinstance(ei, (int, float)) and ei == 1 else x * ei

    def forward(self, state: dict[str, Tensor], lam: Tensor, t: int, graph, params, env, rng, sampler,
                dt: float) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One step: returns the new compartments and per-person events ``new_infections``,
        ``new_onsets``, ``new_removals`` (and ``new_deaths``), each ``[N, R]``."""
        S = state["S"]
        dtype = S.dtype
        # Rates become probabilities on the per-group vectors [G]; the kernel gathers them per person.
        p_onset = -torch.expm1(-dt / params["exposed_period"])
        p_end = -torch.expm1(-dt / params["infectious_period"])
        mu = params["fatality"] if self.fatality else None
        keys = None
        if sampler.stochastic:
            keys = (rng.base, rng.pair_salts(t, "infection", dtype), rng.pair_salts(t, "removal", dtype))
        return self._update(S, state["E"], state["I"], state["R"], state.get("D"), lam, graph.age_group,
                            params["susceptibility"], env.susceptibility, p_onset, p_end, mu, float(dt), keys,
                            sampler)

    def compile_kernel(self, enabled: bool = True) -> None:
        """Run :func:`seir_update` through ``torch.compile`` (one fused loop) or, with
        ``enabled=False``, eagerly.

        The first call of each population size compiles (~5-40 s on a CPU,
        less with Inductor's on-disk cache); a gradient run compiles a few more
        variants in its first steps, as the compartments start to require
        gradients one by one, so the recompile limit is raised to 64.  Hard
        events agree with the eager kernel except where a uniform lies within
        rounding of its probability (the fused ``expm1`` may differ in the last bit).
        """
        if enabled:
            import torch._dynamo

            cfg = torch._dynamo.config
            name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
            setattr(cfg, name, max(getattr(cfg, name), 64))
            compiled = torch.compile(seir_update)

            def update(*args):
                # Dynamo reads ``.grad`` of its (non-leaf) tensor inputs when it traces,
                # which warns; nothing here uses ``.grad``.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf",
                                            category=UserWarning)
                    return compiled(*args)

            self._update = update
        else:
            self._update = seir_update

    def extra_repr(self) -> str:
        return f"compartments={self.compartments}, initial_compartment={self.initial_compartment!r}"
