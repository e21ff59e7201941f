"""Structured configs: the schema of a run, checked before any work starts.

The top-level schema :class:`RunConfig` is registered in Hydra's ConfigStore
as ``lpm_graph_schema`` and sits first in ``conf/config.yaml``'s defaults, so
Hydra type-checks ``seed``, ``steps``, ``device`` ... at composition and
:func:`validate_run_config` checks their values.  Group configs build objects
through ``_target_``; those objects validate their own arguments when built
(the synthetic population through ``SyntheticPopulationSpec``, the model
through its parameter domains) — objects never read the config.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lpm_graph.errors import ConfigError

__all__ = ["RunConfig", "SimulateTaskConfig", "validate_run_config", "register_configs", "TASK_SCHEMAS"]

DTYPES = ("float32", "float64")


@dataclass
class SimulateTaskConfig:
    """``task=simulate``: run the model forward and write its outputs."""

    name: str = "simulate"
    trajectory_format: str = "parquet"
    plot: bool = True
    save_population: bool = False

    def __post_init__(self):
        if self.trajectory_format not in ("parquet", "csv"):
            raise ConfigError(f"task.trajectory_format must be 'parquet' or 'csv', got {self.trajectory_format!r}")


@dataclass
class CalibrateTaskConfig:
    """``task=calibrate``: gradient-based fit of the learnable parameters to observations."""

    name: str = "calibrate"
    iterations: int = 100
    replicates: int = 1
    loss: str = "mse"
    dispersion: float = 10.0
    optimizer: Any = field(default_factory=lambda: {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.05})
    checkpoint_every: int = 10
    resume: Optional[str] = None
    calibration_net: Any = None
    plot: bool = True

    def __post_init__(self):
        from lpm_graph.observation import LOSSES

        if self.iterations < 1:
            raise ConfigError(f"task.iterations must be a positive integer, got {self.iterations}")
        if self.replicates < 1:
            raise ConfigError(f"task.replicates must be a positive integer, got {self.replicates}")
        if self.loss not in LOSSES:
            raise ConfigError(f"task.loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if not self.dispersion > 0:
            raise ConfigError(f"task.dispersion must be > 0 (negative binomial k), got {self.dispersion}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"task.checkpoint_every must be >= 0 (0: only at the end), got {self.checkpoint_every}")
        if not isinstance(self.optimizer, dict) or "_target_" not in self.optimizer:
            raise ConfigError("task.optimizer must be a config with _target_ (e.g. torch.optim.Adam) and _partial_: true")
        if self.calibration_net is not None:
            missing = {"features", "targets"} - set(self.calibration_net)
            if missing:
                raise ConfigError(f"task.calibration_net is missing {sorted(missing)}")


TASK_SCHEMAS = {"simulate": SimulateTaskConfig, "calibrate": CalibrateTaskConfig}


@dataclass
class RunConfig:
    """Top-level settings shared by every task."""

    seed: int = 0
    steps: int = 120
    replicates: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    threads: Optional[int] = None
    progress: bool = True
    population: Any = MISSING
    model: Any = MISSING
    task: Any = MISSING
    observations: Any = None

    def __post_init__(self):
        if self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}")
        if self.steps <= 0:
            raise ConfigError(f"steps must be a positive integer (number of simulated days), got {self.steps}")
        if self.replicates < 1:
            raise ConfigError(f"replicates must be a positive integer, got {self.replicates}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be a positive integer or null (torch's default), got {self.threads}")


def validate_run_config(cfg: DictConfig) -> tuple[RunConfig, Any]:
    """Check the top-level values and the task's; returns ``(run, task)`` dataclasses."""
    top = {k: cfg[k] for k in ("seed", "steps", "replicates", "device", "dtype", "threads", "progress") if k in cfg}
    run = RunConfig(**top, population=None, model=None, task=None)
    for group in ("population", "model", "task"):
        if group not in cfg or cfg[group] is None:
            raise ConfigError(f"config group '{group}' is not set; choose one, e.g. {group}=<name>")
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    name = task_cfg.get("name")
    if name not in TASK_SCHEMAS:
        raise ConfigError(f"task.name must be one of {sorted(TASK_SCHEMAS)}, got {name!r}")
    try:
        task = TASK_SCHEMAS[name](**task_cfg)
    except TypeError as e:
        raise ConfigError(f"task={name}: {e}; known fields: "
                          f"{list(TASK_SCHEMAS[name].__dataclass_fields__)}") from None
    import torch

    if run.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={run.device} was requested but no CUDA device is available "
                          "(torch.cuda.is_available() is False); use device=cpu")
    return run, task


@dataclass
class BuildPopulationTaskConfig:
    """``task=build_population``: build the chosen population and store it in the cache."""

    name: str = "build_population"
    cache_dir: Optional[str] = None  # null: population.cache_dir if set, else data/processed

    def __post_init__(self):
        if self.cache_dir is not None and not str(self.cache_dir).strip():
            raise ConfigError("task.cache_dir must be a directory path or null, got an empty string")


TASK_SCHEMAS["build_population"] = BuildPopulationTaskConfig


ANALYSES = ("sensitivity", "counterfactuals", "policy")
SENSITIVITY_MODES = ("expected", "stochastic", "model")


@dataclass
class PolicyConfig:
    """``task.policy``: a daily vaccine budget allocated across age groups, optimised by gradient."""

    daily_fraction: float = 0.005     # doses per day as a fraction of the population
    efficacy: float = 0.9             # reduction of susceptibility of the vaccinated
    start: int = 0                    # campaign window [start, end) in days
    end: Optional[int] = 60
    steps: Optional[int] = None       # horizon of objective and evaluation; null: top-level steps
    period: Optional[int] = 15        # days per allocation phase (time-varying logits); null: one allocation
    iterations: int = 12              # Adam steps on the allocation logits
    lr: float = 0.5
    mode: str = "expected"            # model mode of the optimisation (evaluation is always stochastic)
    objective: str = "deaths"
    parameter: str = "vaccine_allocation"  # name given to the learnable logits in model.params

    def __post_init__(self):
        if not 0 < self.daily_fraction <= 1:
            raise ConfigError(f"task.policy.daily_fraction must be in (0, 1], got {self.daily_fraction}")
        if not 0 <= self.efficacy <= 1:
            raise ConfigError(f"task.policy.efficacy must be a probability in [0, 1], got {self.efficacy}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ConfigError(f"task.policy.start/end must satisfy 0 <= start < end, got {self.start}, {self.end}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"task.policy.steps must be a positive integer or null, got {self.steps}")
        if self.period is not None and self.period < 1:
            raise ConfigError(f"task.policy.period must be a positive number of days or null, got {self.period}")
        if self.iterations < 1:
            raise ConfigError(f"task.policy.iterations must be a positive integer, got {self.iterations}")
        if not self.lr > 0:
            raise ConfigError(f"task.policy.lr must be > 0, got {self.lr}")
        if self.mode not in ("expected", "stochastic"):
            raise ConfigError(f"task.policy.mode must be 'expected' or 'stochastic', got {self.mode!r}")
        from lpm_graph.analysis.outcomes import OUTCOMES

        if self.objective not in OUTCOMES:
            raise ConfigError(f"task.policy.objective must be one of {list(OUTCOMES)}, got {self.objective!r}")
        if not self.parameter or not str(self.parameter).isidentifier():
            raise ConfigError(f"task.policy.parameter must be a parameter name, got {self.parameter!r}")


def _default_scenarios() -> list:
    return [{"name": "baseline", "environment": []}]


@dataclass
class AnalyzeTaskConfig:
    """``task=analyze``: sensitivity by autograd, counterfactuals and policy evaluation with common random numbers."""

    name: str = "analyze"
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    outcomes: list[str] = field(default_factory=lambda: ["attack_rate", "peak_size", "peak_day", "deaths"])
    replicates: Optional[int] = 4     # replicate columns of stochastic runs; null: top-level replicates
    parameters: Optional[list[str]] = None  # sensitivity: model.params entries; null: all
    sensitivity_mode: str = "expected"       # expected | stochastic | model (model.mode)
    peak_temperature: float = 0.05           # tau of the smooth peak day, a fraction of the peak
    baseline: str = "baseline"
    scenarios: list[Any] = field(default_factory=_default_scenarios)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    plot: bool = True

    def __post_init__(self):
        from lpm_graph.analysis.outcomes import OUTCOMES

        if isinstance(self.policy, dict):
            try:
                self.policy = PolicyConfig(**self.policy)
            except TypeError as e:
                raise ConfigError(f"task.policy: {e}; known fields: "
                                  f"{list(PolicyConfig.__dataclass_fields__)}") from None
        bad = [a for a in self.analyses if a not in ANALYSES]
        if bad or not self.analyses or len(set(self.analyses)) != len(self.analyses):
            raise ConfigError(f"task.analyses must be a non-empty list of distinct entries of {list(ANALYSES)}, "
                              f"got {list(self.analyses)}")
        bad = [o for o in self.outcomes if o not in OUTCOMES]
        if bad or not self.outcomes:
            raise ConfigError(f"task.outcomes must be a non-empty list of {list(OUTCOMES)}, got {list(self.outcomes)}")
        if self.replicates is not None and self.replicates < 1:
            raise ConfigError(f"task.replicates must be a positive integer or null, got {self.replicates}")
        if self.parameters is not None and not self.parameters:
            raise ConfigError("task.parameters is empty; name model.params entries or null for all")
        if self.sensitivity_mode not in SENSITIVITY_MODES:
            raise ConfigError(f"task.sensitivity_mode must be one of {list(SENSITIVITY_MODES)}, "
                              f"got {self.sensitivity_mode!r}")
        if not self.peak_temperature > 0:
            raise ConfigError(f"task.peak_temperature must be > 0, got {self.peak_temperature}")
        names = []
        for i, s in enumerate(self.scenarios):
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
                raise ConfigError(f"task.scenarios[{i}] must be a mapping with a name and an environment list, "
                                  f"got {s!r}")
            env = s.get("environment", [])
            if not isinstance(env, list) or not all(isinstance(e, dict) and "_target_" in e for e in env):
                raise ConfigError(f"task.scenarios[{i}].environment ({s['name']}) must be a list of entries with "
                                  f"_target_ (e.g. lpm_graph.dynamics.VenueClosure), got {env!r}")
            unknown = set(s) - {"name", "environment"}
            if unknown:
                raise ConfigError(f"task.scenarios[{i}] ({s['name']}) has unknown keys {sorted(unknown)}; "
                                  "use name and environment")
            names.append(s["name"])
        if len(set(names)) != len(names):
            raise ConfigError(f"task.scenarios names must be distinct, got {names}")
        if "counterfactuals" in self.analyses and self.baseline not in names:
            raise ConfigError(f"task.baseline {self.baseline!r} is not among task.scenarios {names}; "
                              "add a scenario with that name (usually environment: [])")


TASK_SCHEMAS["analyze"] = AnalyzeTaskConfig


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="lpm_graph_schema", node=RunConfig)
    cs.store(group="task", name="simulate_schema", node=SimulateTaskConfig)
    cs.store(group="task", name="analyze_schema", node=AnalyzeTaskConfig)
    cs.store(group="task", name="build_population_schema", node=BuildPopulationTaskConfig)


register_configs()
