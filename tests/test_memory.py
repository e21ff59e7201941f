"""Memory estimate (lpm_graph.memory): derived from the model's declarations, against measured peak RSS,
and the refusal before any work of every task."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph import memory
from lpm_graph.core import Model, Output, Process, Requirements, StateSpec
from lpm_graph.core.observe import Observable
from lpm_graph.data import generate_population
from lpm_graph.errors import ConfigError, InsufficientMemoryError
from lpm_graph.memory import check_memory, estimate_model, estimate_run
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]

# In a fresh process: the RSS before the population is built, the estimate of what the run adds, the peak.
MEASURE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import lpm_graph  # before torch allocates: the allocator settings lpm_graph chooses apply
import torch
torch.set_num_threads(1)
from lpm_graph import memory
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import compose_config
n, steps, mode, reps = int(float(sys.argv[2])), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
over = [f"population.num_people={n}", f"steps={steps}", f"replicates={reps}"]
if mode != "forward":
    over.append("model.learnable=[transmission.beta_community]")
if mode == "checkpoint":
    over.append("model.checkpoint=true")
cfg = compose_config(over)
model = instantiate_config(cfg.model)
base = memory.current_rss()
est = memory.estimate_config(cfg, model, grad=mode != "forward", replicates=reps)
graph = model.prepare(instantiate_config(cfg.population))
if mode == "forward":
    with torch.no_grad():
        model(graph, steps=steps, replicates=reps)
else:
    model(graph, steps=steps, replicates=reps).series["new_infections"].sum().backward()
peak = memory.peak_rss()  # not ru_maxrss, which carries the parent's size across exec
print(json.dumps({"base": base, "peak": peak, "estimate": est.total, "saved": est.parts["saved_for_backward"]}))
'''


def _measure(people, steps, mode, replicates) -> dict:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(ROOT), str(people), str(steps), mode, str(replicates)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize(("people", "steps", "mode", "replicates"), [
    (300_000, 40, "forward", 1),
    (300_000, 40, "grad", 1),          # autograd keeps every step's tensors
    (100_000, 30, "checkpoint", 4),    # per-step checkpointing, replicate columns
])
def test_whole_process_estimate_is_within_30_percent_of_peak_rss(people, steps, mode, replicates):
    m = _measure(people, steps, mode, replicates)
    assert 0.7 < (m["base"] + m["estimate"]) / m["peak"] < 1.3, m


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_gradient_run_adds_what_its_declarations_say():
    # Without checkpointing, autograd's saved tensors dominate what the run adds: the estimate of them comes
    # from each process's declared state and saved tensors.  Declaring half of them (or forgetting the
    # replicate columns) would put the ratio near 2; the other parts are a few percent.
    m = _measure(300_000, 40, "grad", 1)
    assert m["saved"] > 0.7 * m["estimate"]
    assert 0.75 < (m["peak"] - m["base"]) / m["estimate"] < 1.33, m


class _Firms(Process):
    """Firm-level state: a vector of ``width`` values and one observed scalar, to check that the estimate
    reads declarations."""

    default_name = "firms"

    def __init__(self, width: int = 3, name=None):
        super().__init__(name)
        self.width = width

    def state_specs(self):
        return [StateSpec("firm", "levels", "continuous", (self.width,)), StateSpec("firm", "stock", "continuous")]

    def observables(self):
        return [Observable("stock_mean", "firm.stock", "mean")]

    def forward(self, ctx, state, fields):
        return Output(state={"firm.stock": state["firm.stock"] * 0.5, "firm.levels": state["firm.levels"] * 0.5})


def test_estimate_is_derived_from_declared_state():
    for width in (1, 3):
        model = Model([_Firms(width)])
        est = estimate_model(model, {"firm": 1000}, {}, steps=10, replicates=2)
        # state is held twice at the step boundary (input and output): 2 * (width + 1) * N * R * 4 bytes
        assert est.parts["state"] == 2 * (width + 1) * 1000 * 2 * 4
        grad = estimate_model(model, {"firm": 1000}, {}, steps=10, replicates=2, grad=True)
        assert grad.parts["saved_for_backward"] == 10 * (width + 1) * 1000 * 2 * 4
        f64 = estimate_model(model, {"firm": 1000}, {}, steps=10, replicates=2, dtype=torch.float64)
        assert f64.parts["state"] == 2 * est.parts["state"]


def test_estimate_grows_with_the_run_and_checkpointing_saves_memory():
    cfg = compose_config(["population.num_people=1000000"])
    from lpm_graph.tasks.simulate import instantiate_config

    model = instantiate_config(cfg.model)
    size = dict(num_nodes={"person": 1_000_000, "household": 400_000}, num_edges={("person", "member_of", "household"): 1_000_000})
    fwd = estimate_model(model, **size, steps=100).total
    assert estimate_model(model, **size, steps=100, replicates=4).total > fwd
    grad = estimate_model(model, **size, steps=100, grad=True)
    assert grad.parts["saved_for_backward"] > 0 and grad.total > fwd
    twice = estimate_model(model, **size, steps=200, grad=True)
    assert twice.parts["saved_for_backward"] == 2 * grad.parts["saved_for_backward"]
    ckpt_model = instantiate_config(compose_config(["model.checkpoint=true"]).model)
    ckpt = estimate_model(ckpt_model, **size, steps=100, grad=True)
    # with checkpointing a step keeps only its input state: the four compartments, float32
    assert ckpt.parts["saved_for_backward"] == 100 * 4 * 1_000_000 * 4
    assert ckpt.total < grad.total


def test_estimate_config_is_none_for_a_missing_population_file():
    from lpm_graph.tasks.simulate import instantiate_config

    cfg = compose_config(["population=file", "population.path=x.pt"])
    assert memory.estimate_config(cfg, instantiate_config(cfg.model)) is None
    cfg = compose_config(["population.num_people=2000000", "steps=50", "replicates=2"])
    est = memory.estimate_config(cfg, instantiate_config(cfg.model))
    assert est is not None and est.description.startswith("2,000,000 person")


def test_refusal_names_the_knobs():
    model = Model([_Firms()], learnable=[])
    est = estimate_model(model, {"firm": 10_000_000}, {}, steps=100, grad=True)
    with pytest.raises(InsufficientMemoryError) as info:
        check_memory(est, available=est.total // 2)
    msg = str(info.value)
    assert isinstance(info.value, ConfigError)
    for knob in ("model.checkpoint=true", "fewer steps", "fewer replicates"):
        assert knob in msg
    assert f"{est.total / 2**30:.1f} GiB" in msg
    assert check_memory(est, available=2 * est.total) is est


@pytest.mark.parametrize("task", ["simulate", "calibrate", "analyze"])
def test_every_task_refuses_before_building_the_population(task, tmp_path, monkeypatch):
    from lpm_graph import tasks

    built = []
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 16 * 2**20)
    monkeypatch.setattr("lpm_graph.data.synthetic.generate_population", lambda *a, **k: built.append(1))
    cfg = compose_config([f"task={task}", "population.num_people=200000", "steps=100", "progress=false"])
    with pytest.raises(InsufficientMemoryError, match="is available on cpu"):
        tasks.get(task)(cfg, tmp_path)
    assert built == [] and not any(tmp_path.iterdir())


@pytest.mark.parametrize("task", ["simulate", "calibrate", "analyze"])
def test_every_task_checks_a_built_population_before_its_runs(task, tmp_path, monkeypatch):
    # populations of unknown size (file) are checked once built, before any step
    from lpm_graph import tasks
    from lpm_graph.data import save_population

    save_population(generate_population(3000, seed=2), tmp_path / "pop.pt")
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 1)
    ran = []
    monkeypatch.setattr("lpm_graph.core.loop.Model.forward", lambda *a, **k: ran.append(1))
    cfg = compose_config([f"task={task}", "population=file", f"population.path={tmp_path / 'pop.pt'}", "steps=100",
                          "progress=false"])
    with pytest.raises(InsufficientMemoryError):
        tasks.get(task)(cfg, tmp_path / "out")
    assert ran == []


def test_available_memory_is_positive_and_below_total():
    avail = memory.available_memory("cpu")
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024 if Path("/proc/meminfo").exists() else None
    assert avail > 0
    if total is not None:
        assert avail <= total


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_available_memory_and_estimate():
    free = memory.available_memory("cuda")
    assert 0 < free <= torch.cuda.get_device_properties(0).total_memory
    est = estimate_model(Model([_Firms()]), {"firm": 1000}, {}, steps=10, device="cuda", population_bytes=10**6)
    assert est.parts["population"] == 0


# -----------------------------------------------------------------------------------------
# Every population source is refused before it is built
# -----------------------------------------------------------------------------------------


def _never(built):
    def builder(*args, **kwargs):
        built.append(1)
        raise AssertionError("the population was built before the memory check")
    return builder


@pytest.mark.parametrize("task", ["simulate", "calibrate", "analyze", "build_population"])
def test_a_city_of_ten_billion_is_refused_before_it_is_built(task, tmp_path, monkeypatch):
    # no monkeypatched memory: the estimate (about 4 TiB) exceeds any machine this runs on
    from lpm_graph import tasks

    built = []
    monkeypatch.setattr("lpm_graph.data.census.population_from_marginals", _never(built))
    monkeypatch.setattr("lpm_graph.data.census.generate_population", _never(built))
    cfg = compose_config([f"task={task}", "population=nyc", "population.num_people=10000000000", "progress=false",
                          f"population.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(InsufficientMemoryError) as info:
        tasks.get(task)(cfg, tmp_path / "out")
    msg = str(info.value)
    assert built == [] and not (tmp_path / "cache").exists()
    assert "10,000,000,000 person" in msg and "is available on cpu" in msg
    assert re.search(r"needs about [\d.]+ GiB but only [\d.]+ GiB is available", msg), msg
    assert "a smaller population.num_people" in msg
    if task == "build_population":
        assert msg.startswith("the population (building the population: 10,000,000,000 person")


def _source_files(tmp_path):
    """Small inputs of every file source and the builder each config instantiates."""
    import networkx as nx

    from lpm_graph.data import random_graph, save_population, to_edgelist, to_networkx
    from lpm_graph.data.tables import write_tables

    pop = generate_population(2000, seed=1)
    persons = write_tables(pop, tmp_path / "tables", format="parquet")["persons"]
    to_edgelist(random_graph(1000, seed=1)).to_csv(tmp_path / "edges.csv", index=False)
    (tmp_path / "contacts.dat").write_text("".join(f"{20 * k} {k % 50} {k % 50 + 1}\n" for k in range(3000)))
    nx.write_graphml(to_networkx(random_graph(300, seed=2)), tmp_path / "g.graphml")
    save_population(pop, tmp_path / "pop.pt")
    return {
        "tables": ([f"population.persons={persons}"], "lpm_graph.data.tables.from_tables",
                   "a smaller person table (population.persons)"),
        "edgelist": ([f"population.edges={tmp_path / 'edges.csv'}", "model=contact"],
                     "lpm_graph.data.edgelist.from_edgelist", "a smaller edge list (population.edges)"),
        "sociopatterns": ([f"population.path={tmp_path / 'contacts.dat'}", "model=contact"],
                          "lpm_graph.data.sociopatterns.from_sociopatterns", "a shorter contact file"),
        "networkx": ([f"population.path={tmp_path / 'g.graphml'}", "model=contact"],
                     "lpm_graph.data.networkx_io.from_networkx", "a smaller graph file (population.path)"),
        "file": ([f"population.path={tmp_path / 'pop.pt'}"], "lpm_graph.data.load_population",
                 "a smaller population file (population.path)"),
    }


@pytest.mark.parametrize("source", ["tables", "edgelist", "sociopatterns", "networkx", "file"])
@pytest.mark.parametrize("task", ["simulate", "build_population"])
def test_every_file_source_is_refused_before_it_is_built(source, task, tmp_path, monkeypatch):
    # 64 KiB free: every source's estimate, read from its files, exceeds it
    from lpm_graph import tasks

    over, builder, knob = _source_files(tmp_path)[source]
    built = []
    monkeypatch.setattr(builder, _never(built))
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 2**16)
    cfg = compose_config([f"task={task}", f"population={source}", *over, "progress=false",
                          *([f"population.cache_dir={tmp_path / 'cache'}"] if source != "file" else [])])
    with pytest.raises(InsufficientMemoryError) as info:
        tasks.get(task)(cfg, tmp_path / "out")
    assert built == []
    msg = str(info.value)
    assert re.search(r"needs about [\d.]+ GiB but only 0\.0 GiB is available on cpu", msg), msg
    assert knob in msg
class _EdgeWork(Process):
    """A process declaring per-edge workspace and saved tensors (keys: an edge type)."""

    role = "update"
    default_name = "edgework"
    ET = ("firm", "trades", "firm")

    def state_specs(self):
        return [StateSpec("firm", "stock", "continuous", init=1.0)]

    def requirements(self):
        return Requirements(edge_types={self.ET})

    def observables(self):
        return [Observable("stock_mean", "firm.stock", "mean")]

    def workspace(self):
        return {"firm": 1.0, self.ET: 3.0}

    def saved(self):
        return {self.ET: 2.0}

    def forward(self, ctx, state, fields):
        return Output(state={"firm.stock": state["firm.stock"] * 0.5})


def test_per_edge_workspace_and_saved_are_sized_by_the_edge_count():
    model = Model([_EdgeWork()])
    et = _EdgeWork.ET
    base = estimate_model(model, {"firm": 1000}, {et: 0}, steps=10, replicates=2)
    est = estimate_model(model, {"firm": 1000}, {et: 50_000}, steps=10, replicates=2)
    assert est.parts["step"] - base.parts["step"] == 3 * 50_000 * 2 * 4  # three [E, R] float32 tensors
    grad = estimate_model(model, {"firm": 1000}, {et: 50_000}, steps=10, replicates=2, grad=True)
    grad0 = estimate_model(model, {"firm": 1000}, {et: 0}, steps=10, replicates=2, grad=True)
    assert grad.parts["saved_for_backward"] - grad0.parts["saved_for_backward"] == 10 * 2 * 50_000 * 2 * 4
    assert grad.parts["backward"] - grad0.parts["backward"] == 2 * 3 * 50_000 * 2 * 4
    # a prepared graph says its own edge counts
    data = HeteroData()
    data["firm"].num_nodes = 1000
    data["firm"].uid = torch.arange(1000)
    data[et].edge_index = torch.randint(0, 1000, (2, 5000), generator=torch.Generator().manual_seed(0))
    graph = model.prepare(data)
    run = estimate_run(model, graph, steps=10, replicates=2)
    assert graph.edge_counts() == {et: graph.num_edges()}
    assert run.parts["step"] == estimate_model(model, {"firm": 1000}, graph.edge_counts(), steps=10,
                                               replicates=2).parts["step"]
    assert f"{graph.num_edges():,} edges" in run.description


# -----------------------------------------------------------------------------------------
# Layouts a process copies and keeps: the venue transmission's per-type blocks under decisions
# -----------------------------------------------------------------------------------------


def _venue_model(behavior: str):
    from lpm_graph.tasks.simulate import instantiate_config

    cfg = compose_config(["population.num_people=1500", "steps=2", "progress=false", f"behavior={behavior}",
                          "model.params.seir.initial_infected_fraction=0.02"])
    return cfg, instantiate_config(cfg.model, dtype=torch.float32), instantiate_config(cfg.population)


def test_the_per_type_blocks_of_decided_venue_types_are_counted_with_the_layouts(monkeypatch):
    from lpm_graph.models.epidemic.transmission import _BLOCKS

    cfg, plain, data = _venue_model("none")
    _, decided, _ = _venue_model("rules")          # decides stays_home, avoids_community (and masks)
    graph, graph_decided = plain.prepare(data), decided.prepare(data)
    tr = decided.process("transmission")
    stack = graph_decided.stack(tr.edge_types)
    counts = graph_decided.edge_counts()
    n_person = graph_decided.num_nodes["person"]
    copy = sum(2 * (4 * counts[et] + 4 * (n_person + graph_decided.num_nodes[et[2]]) + 4 * counts[et])
               + 8 * counts[et] for et in stack.edge_types)
    assert sum(counts[et] for et in stack.edge_types) == stack.adjacency.num_edges  # the stack's own edges
    # counted once the graph is built (the blocks are cut at the first step) and before, from the config
    assert tr.layout_copies(set(decided.field_specs)) == {frozenset(tr.edge_types): 1}
    assert plain.process("transmission").layout_copies(set(plain.field_specs)) == {}
    run_decided = estimate_run(decided, graph_decided, 2, 2)
    before = memory.estimate_config(cfg, decided)
    with monkeypatch.context() as m:
        m.setattr(tr, "layout_copies", lambda written: {})
        uncounted = estimate_run(decided, graph_decided, 2, 2)
        before_uncounted = memory.estimate_config(cfg, decided)
    assert run_decided.parts["layouts"] - uncounted.parts["layouts"] == copy
    # before the build, from the expected edge counts of the synthetic spec (within a few percent at 1,500)
    assert before.parts["layouts"] - before_uncounted.parts["layouts"] == pytest.approx(copy, rel=0.1)
    # the count bounds what the run keeps: the blocks and their transposes, and the stack's int64 row index
    decided(graph_decided, steps=1, seed=0, replicates=2)
    blocks = _BLOCKS[stack.adjacency]
    assert all(t.csr is b.csr_t for b, t in blocks)  # a block's transpose shares its tensors
    kept = sum(b.nbytes() for b, _ in blocks) + 8 * stack.adjacency.num_edges
    assert stack.adjacency._rows is not None and stack.adjacency._rows.element_size() == 8
    assert kept <= copy <= 1.5 * kept, (kept, copy)
    plain(graph, steps=1, seed=0, replicates=2)   # no decision: no copy
    assert graph.stack(tr.edge_types).adjacency not in _BLOCKS


@pytest.mark.parametrize("source", ["supply_network", "supply_edgelist", "vaccine_network"])
def test_the_supply_chain_populations_are_refused_before_they_are_built(source, tmp_path, monkeypatch):
    # sizes no machine holds (the network's tiers, the vaccine network's people); the shipped shipment sample
    # with 64 KiB free
    from lpm_graph import tasks

    over, builder = {
        "supply_network": (["model=supply_chain", "population.tiers.consumer=100000000000"],
                           "lpm_graph.models.supply_chain.network.supply_network"),
        "supply_edgelist": (["model=supply_chain", "population=supply_edgelist"],
                            "lpm_graph.models.supply_chain.network.from_shipments"),
        "vaccine_network": (["model=vaccine_logistics", "population.num_people=10000000000"],
                            "lpm_graph.models.vaccine_logistics.vaccine_network"),
    }[source]
    built = []
    monkeypatch.setattr(builder, _never(built))
    if source == "supply_edgelist":
        monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 2**16)
    for task in ("simulate", "build_population"):
        cfg = compose_config([f"task={task}", *over, "progress=false"])
        with pytest.raises(InsufficientMemoryError) as info:
            tasks.get(task)(cfg, tmp_path / task)
        assert built == [] and re.search(r"needs about [\d.]+ GiB but only [\d.]+ GiB is available on cpu",
                                         str(info.value))
