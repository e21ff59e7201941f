"""Make the shipped opinion observations (data/observations/<model>_variance*) from a run with a known parameter.

    python scripts/make_opinion_observations.py                 # model=opinion: the susceptibility
    python scripts/make_opinion_observations.py opinion_hk      # and opinion_deffuant, opinion_stubborn

Runs the opinion model (conf/model/opinion.yaml) on its default population
(the random graph of conf/population/random_graph.yaml: 10,000 people, mean
degree 10, population seed 0) for STEPS steps with the susceptibility in
TRUTH and initial opinions drawn with seed RUN_SEED, and observes the
variance of the opinions at steps 1..STEPS with multiplicative log-normal
noise (sd NOISE of the log).  Writes:

- data/observations/opinion_variance.csv         step, variance
- data/observations/opinion_variance_truth.json  the parameter and settings that made it

``task=calibrate model=opinion`` fits ``degroot.susceptibility`` to it
(conf/task_model/calibrate_opinion.yaml).  The other models of
:data:`MODELS` are made the same way, each with its own parameter, truth and
files (``<model>_variance.csv``, ``<model>_variance_truth.json``): the
confidence bound of ``opinion_hk`` and ``opinion_deffuant``, the
stubbornness of ``opinion_stubborn``.  :func:`make` is also what the
tests call, on a smaller population, to check that the fit recovers the truth.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.observation_truth import simulate_shipped, write_with_truth  # noqa: E402

OUT = ROOT / "data" / "observations"
NAME = "opinion_variance"
TRUTH = {"degroot.susceptibility": 0.25}
STEPS, RUN_SEED, POPULATION_SEED, NOISE = 30, 2024, 0, 0.02
#: model -> (parameter, truth, file stem) of the shipped observations
MODELS = {
    "opinion": ("degroot.susceptibility", TRUTH["degroot.susceptibility"], NAME),
    "opinion_hk": ("confidence.epsilon", 0.15, "opinion_hk_variance"),
    "opinion_deffuant": ("deffuant.epsilon", 0.15, "opinion_deffuant_variance"),
    "opinion_stubborn": ("degroot.stubbornness", 0.1, "opinion_stubborn_variance"),
}


def make(out_dir: Path, overrides=(), truth: float = TRUTH["degroot.susceptibility"], steps: int = STEPS,
         run_seed: int = RUN_SEED, population_seed: int = POPULATION_SEED, noise: float = NOISE,
         name: str = NAME, model: str = "opinion", parameter: str = "degroot.susceptibility") -> dict:
    """Simulate with ``parameter`` at ``truth``, write ``<name>.csv`` and ``<name>_truth.json`` into ``out_dir``.

    Args:
        out_dir: the folder written.
        overrides: Hydra overrides on top of ``model=opinion`` (e.g. a smaller population).
        truth: the value of ``parameter`` in the run.
        steps: observed steps 1..steps.
        run_seed: the seed of the initial opinions.
        population_seed: the top-level seed while composing (the random graph's ``${seed}``).
        noise: sd of the log-normal observation noise (0: the exact variance).
        name: the file stem.
        model: the model config (``conf/model/<model>.yaml``).
        parameter: the dotted name of the parameter set to ``truth``.

    Returns the truth record written to the JSON file.
    """
    cfg, data, traj = simulate_shipped([f"model={model}", f"seed={population_seed}",
                                        f"model.params.{parameter}={truth}", *overrides], steps, run_seed)
    var = traj.series["opinion_var"][1:, 0].double().numpy()
    rng = np.random.default_rng(run_seed)
    observed = var * np.exp(noise * rng.standard_normal(steps)) if noise else var
    record = {**{parameter: truth}, "steps": steps, "seed": run_seed,
              "population": {"population_seed": population_seed, "overrides": list(overrides),
                             "num_people": int(data["person"].num_nodes)},
              "noise": f"observed = variance * exp({noise} * N(0, 1)), numpy default_rng({run_seed})",
              "model": f"conf/model/{model}.yaml, mode " + str(cfg.model.mode)}
    return write_with_truth(out_dir, name, "variance", observed, record)


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "opinion"
    if model not in MODELS:
        sys.exit(f"make_opinion_observations.py: unknown model {model!r}; known: {list(MODELS)}")
    parameter, truth, name = MODELS[model]
    record = make(OUT, truth=truth, name=name, model=model, parameter=parameter)
    print(f"wrote {OUT / (name + '.csv')} and {name}_truth.json: {parameter} "
          f"{record[parameter]}, {record['steps']} steps, {record['population']['num_people']} people")


if __name__ == "__main__":
    main()
