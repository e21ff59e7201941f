"""The ``lpm-graph`` command: a thin Hydra entry point over :mod:`lpm_graph.tasks`.

Configs come from ``conf/`` in a source checkout and from the copy the wheel
carries inside the package (``lpm_graph/conf``) when installed.  The value
returned to a sweeper is the summary entry named by ``metric`` (default: the
task's own, :data:`DEFAULT_METRIC`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.errors import ConfigError, PopulationGraphError

#: what a task returns to a sweeper when ``metric`` is null (``None``: the model's first outcome)
DEFAULT_METRIC = {"simulate": None, "analyze": None, "calibrate": "final_loss", "build_population": "num_nodes",
                  "plan": "processes"}


def config_dir() -> str:
    """The Hydra config folder: packaged copy first, then the source tree's ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"lpm_graph: no Hydra configs found in {here / 'conf'} or {here.parent / 'conf'}; "
                            "reinstall the package (the wheel carries them in lpm_graph/conf)")


def metric_of(name: str, metrics: dict, chosen: str | None) -> tuple[str, float]:
    """The metric a run returns: ``chosen``, else the task's default, else the model's first outcome."""
    key = chosen or DEFAULT_METRIC.get(name)
    if key is None:
        outcomes = list(metrics.get("outcomes") or {})
        if not outcomes:
            raise ConfigError(f"task={name}: the model declares no outcome to return; set metric=<summary entry>")
        key = outcomes[0]
    value = metrics.get(key)
    if value is None and key in (metrics.get("outcomes") or {}):
        value = metrics["outcomes"][key]["mean"]
    if isinstance(value, dict):  # counts per kind (num_nodes): their total; anything else is not a metric
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
        value = sum(value.values()) if numbers else None
    if not isinstance(value, (int, float)):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ConfigError(f"metric={key!r} is not a number in the {name} summary; numbers there: {numeric}")
    return key, float(value)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from lpm_graph import tasks

    name = cfg.task.name
    output_dir = HydraConfig.get().runtime.output_dir
    try:
        metrics = tasks.get(name)(cfg, output_dir)
        key, value = metric_of(name, metrics, cfg.get("metric"))
    except (ConfigError, PopulationGraphError) as e:
        print(f"lpm-graph: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"lpm-graph: {name} done: {key}={value:.4g}; outputs in {output_dir}", file=sys.stderr)
    return value


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
