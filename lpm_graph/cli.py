"""The ``lpm-graph`` command: a thin Hydra entry point over :mod:`lpm_graph.tasks`.

Configs come from ``conf/`` in a source checkout and from the copy the wheel
carries inside the package (``lpm_graph/conf``) when installed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.errors import ConfigError, PopulationGraphError

PRIMARY_METRIC = {"simulate": "attack_rate", "calibrate": "final_loss"}
PRIMARY_METRIC["build_population"] = "num_people"
PRIMARY_METRIC["analyze"] = "attack_rate"  # of the baseline


def config_dir() -> str:
    """The Hydra config folder: packaged copy first, then the source tree's ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"lpm_graph: no Hydra configs found in {here / 'conf'} or {here.parent / 'conf'}; "
                            "reinstall the package (the wheel carries them in lpm_graph/conf)")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from lpm_graph.tasks import TASKS

    name = cfg.task.name
    output_dir = HydraConfig.get().runtime.output_dir
    try:
        metrics = TASKS[name](cfg, output_dir)
    except (ConfigError, PopulationGraphError) as e:
        print(f"lpm-graph: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"lpm-graph: {name} done: {PRIMARY_METRIC[name]}={metrics[PRIMARY_METRIC[name]]:.4f}; "
          f"outputs in {output_dir}", file=sys.stderr)
    return float(metrics[PRIMARY_METRIC[name]])


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
