"""Golden cases: small fixed-seed runs of the shipped configurations.

One place for the case definitions, imported by ``scripts/make_golden.py``
(which records ``tests/golden/<case>.parquet``) and by
``tests/test_golden.py`` (which compares a fresh run with it, bit for bit).

Each case is a task and a list of Hydra overrides on top of the shipped
``conf/``; :func:`run_case` composes it as the CLI does, calls the task
function with an output folder under a work directory, and reads back the
output file that the golden file records:

* ``simulate`` cases: ``trajectory.parquet`` (the whole frame);
* ``calibrate``: ``loss.csv`` (loss and every learnable parameter after each
  iteration);
* ``analyze_sensitivity``: ``sensitivity.csv``.

Every case runs with one intra-op thread (``threads=1``) on the CPU in the
shipped float32, without progress bars or plots.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpm_graph.errors import CalibrationWarning

GOLDEN_DIR = Path(__file__).resolve().parent
CONF_DIR = str(GOLDEN_DIR.parents[1] / "conf")

#: overrides of every case: one thread, no progress bar, no plots
COMMON = ("threads=1", "progress=false", "task.plot=false")

#: the file each task writes that its golden file records
OUTPUT = {"simulate": "trajectory.parquet", "calibrate": "loss.csv", "analyze": "sensitivity.csv"}


#: parameter names of the files recorded before parameters were namespaced per process, and their names now
PARAMETER_NAMES = {
    "beta_household": "transmission.beta_household", "beta_school": "transmission.beta_school",
    "beta_workplace": "transmission.beta_workplace", "beta_community": "transmission.beta_community",
    "exposed_period": "seir.exposed_period", "infectious_period": "seir.infectious_period",
    "susceptibility": "seir.susceptibility", "infectiousness": "infectiousness.relative",
    "initial_infected_fraction": "seir.initial_infected_fraction", "fatality": "seir.fatality",
    "reporting_fraction": "observation.reporting_fraction",
}


def as_recorded(case: "Case", frame: pd.DataFrame) -> pd.DataFrame:
    """An output in the recorded files' naming: parameter names as they were before they were namespaced, and
    sensitivity rows in the recorded order (outcome, then parameter as then ordered).  Names and row order
    only; no value is touched."""
    old = {new: old for old, new in PARAMETER_NAMES.items()}
    if case.task == "calibrate":
        return frame.rename(columns={c: old.get(c, c) for c in frame.columns})
    if case.task == "analyze":
        frame = frame.copy()
        frame["parameter"] = frame["parameter"].map(lambda p: old.get(p, p)).astype(frame["parameter"].dtype)
        outcomes = list(dict.fromkeys(frame["outcome"]))
        params = list(PARAMETER_NAMES)
        key = frame.apply(lambda r: (outcomes.index(r["outcome"]), params.index(r["parameter"])
                                     if r["parameter"] in params else len(params)), axis=1)
        frame = frame.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key")
        return frame.reset_index(drop=True)
    return frame


@dataclass(frozen=True)
class Case:
    name: str
    task: str  # simulate | calibrate | analyze
    overrides: tuple[str, ...]

    @property
    def output(self) -> str:
        """The task's output file that the golden file records."""
        return OUTPUT[self.task]

    @property
    def golden_path(self) -> Path:
        return GOLDEN_DIR / f"{self.name}.parquet"


_SMALL = ("population.num_people=3000", "steps=40", "replicates=2", "seed=3",
          "model.params.seir.initial_infected_fraction=0.01")
_CONTACT = ("population=sociopatterns", "population.path=data/sociopatterns/school_sample.dat",
            "population.cache_dir=null", "model=contact", "model.params.contact.beta=5", "steps=40", "replicates=2",
            "seed=3")
_OPINION = ("model=opinion", "population.num_people=500", "population.mean_degree=6", "steps=30", "replicates=2",
            "seed=3")
_INTERVENTIONS = (
    "model.environment=["
    "{_target_: lpm_graph.models.epidemic.VenueClosure, venue_type: school, start: 5, end: 25},"
    "{_target_: lpm_graph.models.epidemic.Vaccination, daily_fraction: 0.01, start: 0, end: 30},"
    "{_target_: lpm_graph.models.epidemic.Isolation, compliance: 0.5, effectiveness: 0.8, start: 3}]",
)


def _cases() -> list[Case]:
    cases = []
    for name, base in (("seir", ("model=seir", *_SMALL)), ("seird", ("model=seird", *_SMALL)),
                       ("contact", _CONTACT), ("interventions", ("model=seird", *_SMALL, *_INTERVENTIONS)),
                       ("opinion", _OPINION)):
        cases.append(Case(f"{name}_stochastic", "simulate", (*base, "model.mode=stochastic")))
        cases.append(Case(f"{name}_expected", "simulate", (*base, "model.mode=expected")))
    for name in ("sir", "sis"):
        base = (f"model={name}", "population.num_people=3000", "steps=40", "replicates=2", "seed=3",
                f"model.params.{name}.initial_infected_fraction=0.01")
        cases.append(Case(f"{name}_stochastic", "simulate", (*base, "model.mode=stochastic")))
        cases.append(Case(f"{name}_expected", "simulate", (*base, "model.mode=expected")))
    cases.append(Case("sir_fixed_period_exact_seeds", "simulate", (
        "model=sir", "population.num_people=3000", "steps=40", "replicates=2", "seed=3",
        "model.processes.sir.infectious_steps=5", "~model.params.sir.infectious_period",
        "model.params.sir.initial_infected=20", "model.params.sir.initial_infected_fraction=0", "model.mode=stochastic")))
    # the generic environment process on another model: influence switched off for steps 5..14
    cases.append(Case("opinion_shutdown", "simulate", (*_OPINION, "model.environment=[{_target_: lpm_graph.core.Scale, "
                                                                  "field: person.influence_scale, start: 5, end: 15, "
                                                                  "factor: 0.0, name: shutdown}]")))
    cases += [
        # steps stay at the task's 100: the shipped observations cover days 1..100
        Case("calibrate", "calibrate", ("task=calibrate", "population.num_people=2000", "task.iterations=5",
                                        "task.checkpoint_every=0", "seed=3")),
        # sensitivity only (the task's model is seird; sensitivity runs in expected mode)
        Case("analyze_sensitivity", "analyze", ("task=analyze", "task.analyses=[sensitivity]",
                                                "task.outcomes=[attack_rate,peak_size,peak_day,deaths]",
                                                "population.num_people=2000", "steps=40", "seed=3")),
    ]
    # the economy: labour market, goods market and price level on the synthetic population's workplaces
    _economy = ("model=economy", "population.num_people=1000", "steps=24", "replicates=2", "seed=3")
    cases.append(Case("economy_stochastic", "simulate", (*_economy, "model.mode=stochastic")))
    cases.append(Case("economy_expected", "simulate", (*_economy, "model.mode=expected")))
    cases.append(Case("economy_closure", "simulate", (*_economy, "model.environment=[{_target_: "
                                                                  "lpm_graph.models.economy.FirmClosure, share: 0.2, "
                                                                  "start: 6, end: 12}]")))
    # model=supply_chain on a small synthetic network (2 suppliers, 4 warehouses, 10 retailers, 500 consumers)
    supply = ("model=supply_chain", "population.tiers.supplier=2", "population.tiers.warehouse=4",
              "population.tiers.retailer=10", "population.tiers.consumer=500", "population.capacity.supplier=600",
              "model.params.warehouse.initial_stock=250", "model.params.warehouse_policy.initial_forecast=125",
              "model.params.retailer.initial_stock=150", "model.params.retailer_policy.initial_forecast=50",
              "steps=25", "replicates=2", "seed=3")
    cases.append(Case("supply_chain_stochastic", "simulate", (*supply, "model.mode=stochastic")))
    cases.append(Case("supply_chain_expected", "simulate", (*supply, "model.mode=expected")))
    # the opinion model's other processes (added after every earlier case, so the earlier files stay as recorded)
    for name in ("opinion_stubborn", "opinion_hk", "opinion_deffuant"):
        cases.append(Case(f"{name}_stochastic", "simulate", (f"model={name}", *_OPINION[1:], "model.mode=stochastic")))
    cases.append(Case("opinion_stubborn_fraction", "simulate", (
        "model=opinion_stubborn", *_OPINION[1:], "model.params.degroot.stubbornness=0.0",
        "model.processes.degroot.stubborn_fraction=0.05")))
    # model=vaccine_logistics: depots -> clinics -> people (the supply chain's stages and SEIRD) on 3,000 people
    vaccine = ("model=vaccine_logistics", "population.num_people=3000", "population.community.mean_size=500",
               "population.people_per_clinic=[500,250,250,125]", "population.supply=0.01",
               "model.params.seir.initial_infected_fraction=0.005", "steps=30", "replicates=2", "seed=3")
    cases.append(Case("vaccine_logistics_stochastic", "simulate", (*vaccine, "model.mode=stochastic")))
    cases.append(Case("vaccine_logistics_expected", "simulate", (*vaccine, "model.mode=expected")))
    return cases


CASES: dict[str, Case] = {c.name: c for c in _cases()}


def compose_case(case: Case):
    """The composed config of a case (shipped ``conf/`` plus the case's overrides), as the CLI composes it."""
    from hydra import compose, initialize_config_dir

    import lpm_graph.config  # noqa: F401  (registers the structured schemas)

    overrides = [*case.overrides, *COMMON]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def read_output(path: Path) -> pd.DataFrame:
    """An output file as a frame.

    CSV: pandas parses the shortest-repr floats the tasks write exactly (pandas >= 3 always does; its
    ``float_precision`` option is deprecated); only empty cells are missing values.
    """
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **exact)


def run_case(case: Case, workdir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Run a case with outputs in ``workdir/<case name>``; return ``{output file name: frame}``.

    The intra-op thread count the task sets (``threads=1``) is restored afterwards.
    """
    from lpm_graph import tasks

    task = tasks.get(case.task)
    cfg = compose_case(case)
    out = Path(workdir) / case.name
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # the calibrate case fits 2,000 people to the shipped observations of 100,000: rightly warned of
            warnings.simplefilter("ignore", CalibrationWarning)
            task(cfg, out)
    finally:
        torch.set_num_threads(threads)
    return {case.output: as_recorded(case, read_output(out / case.output))}


def column_differences(golden: pd.DataFrame, new: pd.DataFrame) -> dict[str, str]:
    """``{column: how it differs}`` for every column of ``golden`` that ``new`` lacks or does not equal exactly.

    Numeric columns report the largest absolute difference (NaN counts as equal to NaN only); other columns
    the number of differing rows.  A different row count or dtype is reported as such.
    """
    out = {}
    if len(golden) != len(new):
        out["(rows)"] = f"{len(golden)} rows in the golden file, {len(new)} now"
    for col in golden.columns:
        if col not in new.columns:
            out[col] = "missing"
            continue
        a, b = golden[col], new[col]
        notes = [f"dtype {a.dtype} -> {b.dtype}"] if a.dtype != b.dtype else []
        if len(a) == len(b):
            if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
                x, y = a.to_numpy(dtype=np.float64), b.to_numpy(dtype=np.float64)
                nan_mismatch = int((np.isnan(x) != np.isnan(y)).sum())
                both = ~(np.isnan(x) | np.isnan(y))
                if (x[both] != y[both]).any():
                    with np.errstate(invalid="ignore"):
                        notes.append(f"largest absolute difference {np.nanmax(np.abs(x[both] - y[both])):.6g}")
                if nan_mismatch:
                    notes.append(f"NaN in one but not the other in {nan_mismatch} rows")
            else:
                differ = int((~((a.to_numpy() == b.to_numpy()) | (a.isna().to_numpy() & b.isna().to_numpy()))).sum())
                if differ:
                    notes.append(f"{differ} rows differ")
        if notes:
            out[col] = "; ".join(notes)
    return out
