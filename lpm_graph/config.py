"""Structured configs: the schema of a run, checked before any work starts.

The top-level schema :class:`RunConfig` is registered in Hydra's ConfigStore
as ``lpm_graph_schema`` and sits first in ``conf/config.yaml``'s defaults, so
Hydra type-checks ``seed``, ``steps``, ``device`` ... at composition and
:func:`validate_run_config` checks their values; each task's schema is
registered as ``schema/task/<name>`` (not a task choice) and sits first in its config, so a
wrong type (``task.iterations=abc``) is refused at composition too.  Group
configs build objects through ``_target_``; those objects validate their own
arguments when built (the synthetic population through
``SyntheticPopulationSpec``, the model through its processes' declarations)
— objects never read the config.

Settings of a task that depend on the model — what ``task=calibrate`` fits
and to which observations, which scenarios and policies ``task=analyze``
compares — live in ``conf/task_model/<task>_<model>.yaml``, which the
defaults list picks for the chosen task and model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lpm_graph.errors import ConfigError

__all__ = ["RunConfig", "DistributedConfig", "SimulateTaskConfig", "CalibrateTaskConfig", "AnalyzeTaskConfig", "PolicyConfig",
           "BuildPopulationTaskConfig", "PlanTaskConfig", "validate_run_config", "register_configs", "TASK_SCHEMAS"]

DTYPES = ("float32", "float64")
LOSSES = ("mse", "poisson", "negbin")
#: ``task.method`` of ``task=calibrate`` (lpm_graph/tasks/posterior.py)
METHODS = ("map", "vi", "laplace", "nuts", "sbi")
#: prior distributions of ``task.priors`` and their arguments (torch.distributions names), elementwise
PRIORS = {"Uniform": ("low", "high"), "Normal": ("loc", "scale"), "LogNormal": ("loc", "scale"),
          "HalfNormal": ("scale",), "Gamma": ("concentration", "rate"), "Beta": ("concentration1", "concentration0")}
#: vi's guides: ``truncated_normal`` (lpm_graph.tasks.guides: a correlated normal in the bounded parameters, cut at
#: their bounds) or ``normal`` (Pyro's AutoMultivariateNormal in the unconstrained space)
GUIDES = ("truncated_normal", "normal")
#: the losses that are a likelihood (a noise model) and so admit priors and a posterior
LIKELIHOODS = ("poisson", "negbin")


@dataclass
class SimulateTaskConfig:
    """``task=simulate``: run the model forward and write its outputs."""

    name: str = "simulate"
    trajectory_format: str = "parquet"
    plot: bool = True
    report: bool = True  # report.html (lpm_graph.report)
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
    method: str = "map"
    priors: Any = None
    draws: int = 1000
    warmup: int = 200
    chains: int = 2
    max_tree_depth: int = 6
    particles: int = 1
    lr_half_life: int = 100
    map_evaluations: int = 60  # vi, laplace: L-BFGS evaluations of the MAP fit that starts the approximation (0: none)
    map_starts: int = 4  # vi, laplace: L-BFGS starts of that fit (the config's values, then draws of the prior)
    guide: str = "truncated_normal"  # vi: truncated_normal (in theta, cut at the bounds) | normal (in z)
    renyi_alpha: Optional[float] = None  # vi: None: the ELBO; a number != 1: Pyro's RenyiELBO of that order
    laplace_proposals: int = 20000  # laplace: importance draws on the approximation (no simulations)
    laplace_refinements: int = 0  # laplace: re-expansions at its own mode (2 dim simulations each)
    importance_samples: int = 0  # laplace: simulations of a PSIS correction (0: none)
    simulations: int = 1000
    predictive_draws: int = 50
    report: bool = True  # report.html (lpm_graph.report)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"task.method must be one of {list(METHODS)}, got {self.method!r}")
        for key in ("draws", "warmup", "chains", "max_tree_depth", "particles", "simulations", "predictive_draws",
                    "map_starts", "laplace_proposals"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.{key} must be a positive integer, got {getattr(self, key)}")
        if self.map_evaluations < 0:
            raise ConfigError(f"task.map_evaluations must be >= 0 simulations (vi, laplace; 0: start at the config's "
                              f"values), got {self.map_evaluations}")
        if self.laplace_refinements < 0:
            raise ConfigError(f"task.laplace_refinements must be >= 0 (laplace), got "
                              f"{self.laplace_refinements}")
        if self.importance_samples < 0:
            raise ConfigError(f"task.importance_samples must be >= 0 simulations (laplace; 0: no "
                              f"correction), got {self.importance_samples}")
        if self.guide not in GUIDES:
            raise ConfigError(f"task.guide must be one of {list(GUIDES)} (task.method=vi's guide), got "
                              f"{self.guide!r}")
        if self.method != "vi" and self.guide != GUIDES[0]:
            raise ConfigError(f"task.guide={self.guide} is task.method=vi's guide; with task.method={self.method} "
                              f"leave it at its default ({GUIDES[0]})")
        if self.method == "laplace" and self.renyi_alpha is not None:
            raise ConfigError(f"task.renyi_alpha={self.renyi_alpha} is an SVI objective, and task.method=laplace runs "
                              "no SVI: set task.method=vi, or task.renyi_alpha=null")
        if self.method != "laplace" and self.importance_samples:
            raise ConfigError(f"task.importance_samples={self.importance_samples} corrects task.method=laplace; with "
                              f"task.method={self.method} set it to 0")
        if self.renyi_alpha is not None and (self.renyi_alpha == 1 or self.particles < 2):
            raise ConfigError(f"task.renyi_alpha={self.renyi_alpha}: Renyi's divergence needs an order other than 1 "
                              f"(1 is the ELBO: task.renyi_alpha=null) and task.particles >= 2, got "
                              f"{self.particles}")
        if self.lr_half_life < 0:
            raise ConfigError(f"task.lr_half_life must be >= 0 iterations (vi; 0: a constant learning rate), got "
                              f"{self.lr_half_life}")
        if (self.method != "map" or self.priors) and self.loss not in LIKELIHOODS:
            what = f"task.method={self.method}" if self.method != "map" else "task.priors"
            raise ConfigError(f"{what} needs a likelihood: set task.loss to one of {list(LIKELIHOODS)} (the noise "
                              f"of the observations), got {self.loss!r}")
        if self.priors is not None:
            check_priors(self.priors)
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


def prior_entries(priors, prefix: str = "") -> dict:
    """``task.priors`` as ``{dotted parameter name: {dist: ..., <arguments>}}`` (nested or dotted keys)."""
    out = {}
    for key, value in dict(priors or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, (dict, DictConfig)) and "dist" not in value:
            out.update(prior_entries(value, name + "."))
        else:
            out[name] = value
    return out


def check_priors(priors) -> None:
    """Every entry of ``task.priors`` names a known distribution with exactly its arguments."""
    if not isinstance(priors, (dict, DictConfig)):
        raise ConfigError(f"task.priors must map parameter names to {{dist: <name>, <arguments>}}, got {priors!r}")
    for name, spec in prior_entries(priors).items():
        where = f"task.priors.{name}"
        if not isinstance(spec, (dict, DictConfig)):
            raise ConfigError(f"{where} must be {{dist: <name>, <arguments>}}, got {spec!r}")
        dist = spec.get("dist")
        if dist not in PRIORS:
            valid = "; ".join(f"{d}({', '.join(a)})" for d, a in PRIORS.items())
            raise ConfigError(f"{where}.dist: unknown prior {dist!r}; valid priors: {valid}")
        given, needed = set(spec) - {"dist"}, set(PRIORS[dist])
        if given != needed:
            raise ConfigError(f"{where}: {dist} takes {list(PRIORS[dist])}, got {sorted(given)}")


@dataclass
class BuildPopulationTaskConfig:
    """``task=build_population``: build the chosen population and store it in the cache."""

    name: str = "build_population"
    cache_dir: Optional[str] = None  # null: population.cache_dir if set, else data/processed
    report: bool = True  # report.html (lpm_graph.report)

    def __post_init__(self):
        if self.cache_dir is not None and not str(self.cache_dir).strip():
            raise ConfigError("task.cache_dir must be a directory path or null, got an empty string")


@dataclass
class PlanTaskConfig:
    """``task=plan``: build the model, print its step order, parameters and observables; run nothing."""

    name: str = "plan"
    report: bool = True  # report.html (lpm_graph.report)


ANALYSES = ("sensitivity", "counterfactuals", "policy")
SENSITIVITY_MODES = ("expected", "stochastic", "model")


def _check_processes(where: str, entries, named: bool = False) -> None:
    """A list of processes with ``_target_`` (or, ``named``, also a mapping of name -> process or null)."""
    if named and isinstance(entries, dict):
        if all(isinstance(k, str) and (e is None or isinstance(e, dict) and "_target_" in e)
               for k, e in entries.items()):
            return
        raise ConfigError(f"{where} as a mapping names processes: each entry a process with _target_, or null to "
                          f"remove the model's process of that name; got {entries!r}")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "_target_" in e for e in entries):
        raise ConfigError(f"{where} must be a list of processes with _target_ (e.g. "
                          f"lpm_graph.models.epidemic.VenueClosure)" + (", or a mapping of name -> process or "
                                                                        "null" if named else "") + f", got {entries!r}")


@dataclass
class PolicyConfig:
    """``task.policy``: policy parameters of environment processes optimised by gradient, then compared
    with reference policies on common random numbers."""

    objective: str = MISSING              # an outcome of the model
    parameters: list[str] = MISSING       # dotted names of the policy parameters
    environment: list[Any] = field(default_factory=list)  # the policy's processes (added to model.environment)
    time_varying: dict[str, int] = field(default_factory=dict)  # policy parameters with one value per period
    references: dict[str, Any] = field(default_factory=dict)   # name -> environment processes of a reference
    reference: Optional[str] = None       # the policy differences are paired against; null: the first reference
    maximize: bool = False
    steps: Optional[int] = None           # horizon of objective and evaluation; null: top-level steps
    iterations: int = 12                  # Adam steps on the policy parameters
    lr: float = 0.5
    mode: str = "expected"                # model mode of the optimisation (evaluation is always stochastic)

    def __post_init__(self):
        if not self.parameters:
            raise ConfigError("task.policy.parameters is empty: name the policy parameters to optimise")
        _check_processes("task.policy.environment", list(self.environment))
        for name, entries in dict(self.references).items():
            _check_processes(f"task.policy.references.{name}", list(entries))
        if self.reference is not None and self.reference not in self.references:
            raise ConfigError(f"task.policy.reference {self.reference!r} is not among task.policy.references "
                              f"{list(self.references)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"task.policy.steps must be a positive integer or null, got {self.steps}")
        if self.iterations < 1:
            raise ConfigError(f"task.policy.iterations must be a positive integer, got {self.iterations}")
        if not self.lr > 0:
            raise ConfigError(f"task.policy.lr must be > 0, got {self.lr}")
        if self.mode not in ("expected", "stochastic"):
            raise ConfigError(f"task.policy.mode must be 'expected' or 'stochastic', got {self.mode!r}")
        for name, period in dict(self.time_varying).items():
            if name not in self.parameters or not isinstance(period, int) or period < 1:
                raise ConfigError(f"task.policy.time_varying.{name} must be a period >= 1 of a policy parameter, "
                                  f"got {period!r}")


def _default_scenarios() -> list:
    return [{"name": "baseline", "environment": []}]


@dataclass
class AnalyzeTaskConfig:
    """``task=analyze``: sensitivity by autograd, counterfactuals and policy evaluation with common random numbers."""

    name: str = "analyze"
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    outcomes: Optional[list[str]] = None     # outcomes of the model to report; null: all it declares
    replicates: Optional[int] = 4     # replicate columns of stochastic runs; null: top-level replicates
    parameters: Optional[list[str]] = None  # sensitivity: model.params entries; null: all
    sensitivity_mode: str = "expected"       # expected | stochastic | model (model.mode)
    peak_temperature: float = 0.05           # tau of a smooth argmax outcome, a fraction of the peak
    baseline: str = "baseline"
    scenarios: list[Any] = field(default_factory=_default_scenarios)
    policy: Optional[Any] = None
    plot: bool = True
    report: bool = True  # report.html (lpm_graph.report)
    posterior: Optional[str] = None          # posterior.parquet of task=calibrate: every analysis over its draws
    posterior_draws: Optional[int] = 20      # draws of it used, evenly spread over its rows; null: every row
    posterior_ignore: list[str] = field(default_factory=list)  # its columns no simulator reads (observation.*)

    def __post_init__(self):
        if self.posterior_draws is not None and self.posterior_draws < 1:
            raise ConfigError(f"task.posterior_draws must be a positive integer or null (every draw), got "
                              f"{self.posterior_draws}")
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
        if "policy" in self.analyses and self.policy is None:
            raise ConfigError("task.analyses includes 'policy' but task.policy is not set for this model "
                              "(conf/task_model/analyze_<model>.yaml); set task.policy or drop 'policy'")
        if self.outcomes is not None and not self.outcomes:
            raise ConfigError("task.outcomes is empty; name outcomes of the model or null for all")
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
            _check_processes(f"task.scenarios[{i}].environment ({s['name']})", s.get("environment", []), named=True)
            _check_processes(f"task.scenarios[{i}].behavior ({s['name']})", s.get("behavior", []), named=True)
            unknown = set(s) - {"name", "environment", "behavior"}
            if unknown:
                raise ConfigError(f"task.scenarios[{i}] ({s['name']}) has unknown keys {sorted(unknown)}; "
                                  "use name, environment and behavior")
            names.append(s["name"])
        if len(set(names)) != len(names):
            raise ConfigError(f"task.scenarios names must be distinct, got {names}")
        if "counterfactuals" in self.analyses and self.baseline not in names:
            raise ConfigError(f"task.baseline {self.baseline!r} is not among task.scenarios {names}; "
                              "add a scenario with that name (usually environment: [])")


TASK_SCHEMAS = {"simulate": SimulateTaskConfig, "calibrate": CalibrateTaskConfig, "analyze": AnalyzeTaskConfig,
                "build_population": BuildPopulationTaskConfig, "plan": PlanTaskConfig}


@dataclass
class DistributedConfig:
    """A partitioned run (``torchrun --nproc_per_node=P -m lpm_graph ...``; docs/distributed.md)."""

    partition: Optional[str] = None   # a folder written by lpm_graph.distributed.write_partition; null: split here
    method: str = "metis"             # metis | contiguous | random (how rank 0 splits when partition is null)
    timeout: float = 300.0            # seconds a collective waits for the other ranks before the run fails
    backend: Optional[str] = None     # gloo | nccl; null: nccl on CUDA, gloo on the CPU

    def __post_init__(self):
        if self.method not in ("metis", "contiguous", "random"):
            raise ConfigError(f"distributed.method must be metis, contiguous or random, got {self.method!r}")
        if not self.timeout > 0:
            raise ConfigError(f"distributed.timeout must be a positive number of seconds, got {self.timeout}")
        if self.backend not in (None, "gloo", "nccl"):
            raise ConfigError(f"distributed.backend must be gloo, nccl or null, got {self.backend!r}")


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
    metric: Optional[str] = None
    population: Any = MISSING
    model: Any = MISSING
    task: Any = MISSING
    observations: Any = None
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    privacy: Any = None      # conf/privacy/: private agents' settings (lpm_graph/privacy/agents.py)

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
            raise ConfigError(f"threads must be a positive integer or null (the default), got {self.threads}")


TOP_LEVEL = ("seed", "steps", "replicates", "device", "dtype", "threads", "progress", "metric")


def validate_run_config(cfg: DictConfig) -> tuple[RunConfig, Any]:
    """Check the top-level values and the task's; returns ``(run, task)`` dataclasses."""
    top = {k: cfg[k] for k in TOP_LEVEL if k in cfg}
    run = RunConfig(**top, population=None, model=None, task=None)
    if "distributed" in cfg and cfg.distributed is not None:
        run.distributed = DistributedConfig(**OmegaConf.to_container(cfg.distributed, resolve=True))
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
    if run.device.startswith("cuda"):
        import torch  # only here: the other checks run before the CLI imports torch

    if run.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={run.device} was requested but no CUDA device is available "
                          "(torch.cuda.is_available() is False); use device=cpu")
    return run, task


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="lpm_graph_schema", node=RunConfig)
    for name, schema in TASK_SCHEMAS.items():
        cs.store(group="schema/task", name=name, node=schema)  # not a task choice; conf/task/<name>.yaml uses it


register_configs()
