"""What a spawned rank of the partitioned-run tests does (importable by torch.multiprocessing's spawned children)."""
from __future__ import annotations

import os

import torch

from lpm_graph.cli import config_dir


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def build(overrides):
    """(model, population, run config) of a composed config, as the CLI builds them."""
    from lpm_graph.config import validate_run_config
    from lpm_graph.tasks.simulate import instantiate_config

    cfg = compose(overrides)
    run, _ = validate_run_config(cfg)
    model = instantiate_config(cfg.model, dtype=getattr(torch, run.dtype))
    data = instantiate_config(cfg.population)
    return model, data, run


def loss_of(traj, n):
    """A loss that weighs every step differently, so a gradient misses nothing a step contributes (the epidemic's
    new infections and last prevalence, or the opinions' variance and last mean)."""
    if "new_infections" not in traj.series:
        x = traj.series["opinion_var"]
        w = torch.arange(1, x.size(0) + 1, dtype=x.dtype).unsqueeze(1)
        return (w * x).sum() + (traj.series["opinion_mean"][-1] ** 2).sum()
    x = traj.series["new_infections"]
    w = torch.arange(1, x.size(0) + 1, dtype=x.dtype).unsqueeze(1)
    return (w * x).sum() / n + (traj.series["I"][-1] ** 2).sum() / n ** 2


def run(model, graph, run_cfg, grad: bool):
    torch.set_grad_enabled(grad)
    traj = model(graph, steps=run_cfg.steps, seed=run_cfg.seed, replicates=run_cfg.replicates)
    out = {"series": {k: v.detach().clone() for k, v in traj.series.items()},
           "grouped": {g: {k: v.detach().clone() for k, v in named.items()} for g, named in traj.grouped.items()},
           "num_nodes": dict(traj.num_nodes)}
    if grad:
        loss = loss_of(traj, sum(traj.num_nodes.values()))
        loss.backward()
        out["loss"] = float(loss.detach())
    return out


def grads(model):
    return {n: model.params.raw(n).grad.detach().clone() for n in model.params.learnable}


def part(rank: int, world: int, init_file: str, overrides, out_dir: str, grad: bool, method: str, folder,
         then=None, more=()) -> None:
    """One rank of a run of ``overrides`` (its observables and gradients to ``rank<r>.pt``), then, in the same
    process group, the runs of each overrides in ``more`` (partitioned by ``method``; to ``more<i>-rank<r>.pt``)
    and the task of the overrides ``then`` (its outputs to ``task<r>/``)."""
    import torch.distributed as dist

    from lpm_graph.distributed.halo import average_gradients
    from lpm_graph.distributed.runner import prepare_part

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, data, run_cfg = build(overrides)
        graph, _ = prepare_part(model, None if folder else data, folder=folder, method=method,
                                dtype=getattr(torch, run_cfg.dtype))
        out = run(model, graph, run_cfg, grad)
        if grad:
            average_gradients([p for p in model.parameters() if p.requires_grad])
            out["grads"] = grads(model)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        for i, extra in enumerate(more):
            model, data, run_cfg = build(extra)
            graph, _ = prepare_part(model, data, method=method, dtype=getattr(torch, run_cfg.dtype))
            out = run(model, graph, run_cfg, grad)
            if grad:
                average_gradients([p for p in model.parameters() if p.requires_grad])
                out["grads"] = grads(model)
            out["ghosts"] = {nt: h.num_local - h.num_owned for nt, h in graph.partition.info.halos.items()}
            torch.save(out, os.path.join(out_dir, f"more{i}-rank{rank}.pt"))
        if then is not None:
            from lpm_graph import tasks

            cfg = compose(then)
            tasks.get(cfg.task.name)(cfg, os.path.join(out_dir, f"task{rank}"))
    finally:
        dist.destroy_process_group()


class Fail(__import__("lpm_graph.core.process", fromlist=["Process"]).Process):
    """An environment process that makes one rank die (``os._exit``) or hang at one step: a rank's failure."""

    role = "environment"
    default_name = "fail"
    partitionable = True

    def __init__(self, rank: int = 1, step: int = 2, how: str = "die", name=None):
        super().__init__(name)
        self.rank, self.step, self.how = rank, step, how

    def forward(self, ctx, state, fields):
        import time

        import torch.distributed as dist

        from lpm_graph.core.process import Output

        if ctx.t == self.step and dist.get_rank() == self.rank:
            if self.how == "die":
                os._exit(3)
            time.sleep(3600)
        return Output()

