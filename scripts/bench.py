"""Performance at scale: one simulated step against the bare sparse kernel, memory, build time.

    python scripts/bench.py                          # 1e5 and 1e6 people, eager and compiled step
    python scripts/bench.py --sizes 1e6 --compile on --steps 100 --grad-steps 100
    python scripts/bench.py --nyc                    # also 8.4e6 people (NYC), forward only
    python scripts/bench.py --device cuda            # GPU numbers where one is available

For every population size and every step variant (``--compile off``, ``on`` or
``both``) two fresh subprocesses run, so that peak memory (``ru_maxrss``; on
a GPU also ``torch.cuda.max_memory_allocated``) of one configuration does not
contaminate another:

``forward``
    builds the synthetic population (the shipped ``population=synthetic``
    config) and its layouts (timed), times the **bare kernel** on those edges
    — the two CSR products with ``int32`` indices of one step,
    :math:`A x` and :math:`A^\\top p` on the stacked membership layout of the venue transmission,
    ``torch.sparse.mm`` without autograd, median of 20 — then runs the model
    of the shipped config (``model=seir``) ``--steps`` steps without
    gradients, ``--repeat`` times (median); the kernel is timed again between
    runs and its median over all rounds is the reference.
``grad``
    the calibration setting: the four ``beta_*`` learnable, per-step
    checkpointing on, ``--grad-steps`` steps forward, then the backward of the
    total of new infections, ``--repeat`` times (median); times both and the
    kernel in the same process.

Printed and written (``--json``, ``--markdown``): build time; forward time
per step and for the whole run; the ratio step / bare kernel; edges per
second (each step reads every membership edge twice) and the effective
bandwidth (the bytes the kernel must move — column index, value and gathered
input per edge, row pointer and output per row — over the step time);
forward and backward time per step of the grad run and their ratio; peak RSS
of each subprocess and the memory estimate of :mod:`lpm_graph.memory`.

Timings on a shared machine are noisy: compare the ratios, which are
measured against the kernel in the same process, and check ``uptime``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
BETAS = ["transmission.beta_household", "transmission.beta_school", "transmission.beta_workplace",
         "transmission.beta_community"]


# --------------------------------------------------------------------------- worker (one subprocess)


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    import lpm_graph.config  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _venue_layout(model, graph):
    """The stacked person -> venue layout the venue transmission multiplies with."""
    return graph.stack(model.process("transmission").edge_types).adjacency


def _kernel_ms(adj, replicates, device, repeat=20):
    """Median time (ms) of A x and A^T p on the venue layout: the two products of one step."""
    import torch

    csr, csr_t = adj.csr, adj.csr_t
    x = torch.rand(adj.shape[1], replicates, device=device)
    p = torch.rand(adj.shape[0], replicates, device=device)
    with torch.no_grad():
        for _ in range(2):
            torch.sparse.mm(csr_t, torch.sparse.mm(csr, x))
        times = []
        for _ in range(repeat):
            _sync(device)
            t0 = time.perf_counter()
            torch.sparse.mm(csr, x)
            torch.sparse.mm(csr_t, p)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _kernel_bytes(adj, replicates):
    """Bytes the two products must move at least: per edge an int32 column, a float32 value
    and the gathered input; per row the int32 row pointer and the output."""
    e, n, v, r = adj.num_edges, adj.shape[1], adj.shape[0], replicates
    return 2 * e * (4 + 4 + 4 * r) + (n + v + 2) * 4 + (n + v) * 4 * r


def worker(args) -> dict:
    import torch
    from hydra.utils import instantiate

    import lpm_graph.data  # noqa: F401  (imported before the build is timed: the build, not the import)
    import lpm_graph.models.epidemic  # noqa: F401
    from lpm_graph import memory

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    overrides = [f"population.num_people={int(args.num_people)}", f"model.compile={args.compile == 'on'}"]
    if args.phase == "grad":
        overrides += ["model.checkpoint=true", f"model.learnable=[{','.join(BETAS)}]"]
    cfg = _compose(overrides)
    out = {"phase": args.phase, "num_people": int(args.num_people), "compile": args.compile == "on",
           "device": device, "threads": torch.get_num_threads(), "replicates": args.replicates}

    t0 = time.perf_counter()
    data = instantiate(cfg.population, _convert_="all")
    out["generate_s"] = time.perf_counter() - t0
    model = instantiate(cfg.model, _convert_="all")
    t0 = time.perf_counter()
    graph = model.prepare(data)
    out["prepare_s"] = time.perf_counter() - t0
    out["build_s"] = out["generate_s"] + out["prepare_s"]
    model = model.to(device)
    graph = graph.to(device)
    adj = _venue_layout(model, graph)
    out.update(edges=adj.num_edges, venues=adj.shape[0],
               index_dtype=str(adj.csr.col_indices().dtype).replace("torch.", ""))
    steps = args.steps if args.phase == "forward" else args.grad_steps
    est = memory.estimate_run(model, graph, steps, args.replicates, grad=args.phase == "grad", device=device)
    memory.check_memory(est)
    # what the process holds once the population is built, plus what the run is estimated to add
    out["estimate_mb"] = (memory.current_rss() + est.total) / 2**20
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    kernels = [_kernel_ms(adj, args.replicates, device)]
    if args.phase == "forward":
        with torch.no_grad():
            t0 = time.perf_counter()
            model(graph, steps=2, seed=0, replicates=args.replicates)  # warm-up (compiles when compile=on)
            _sync(device)
            out["warmup_s"] = time.perf_counter() - t0
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                traj = model(graph, steps=steps, seed=0, replicates=args.replicates)
                _sync(device)
                runs.append(time.perf_counter() - t0)
                kernels.append(_kernel_ms(adj, args.replicates, device))
        out["forward_s"] = statistics.median(runs)
        out["forward_runs_s"] = runs
        out["forward_step_ms"] = out["forward_s"] / steps * 1e3
        out["attack_rate"] = float(1 - traj.series["S"][-1].mean() / graph.num_nodes["person"])
    else:
        t0 = time.perf_counter()
        model(graph, steps=2, seed=0, replicates=args.replicates).series["new_infections"].sum().backward()
        _sync(device)
        out["warmup_s"] = time.perf_counter() - t0
        fwd_ms, bwd_ms = [], []
        for _ in range(args.repeat):
            model.zero_grad()
            t0 = time.perf_counter()
            traj = model(graph, steps=steps, seed=0, replicates=args.replicates)
            loss = traj.series["new_infections"].sum()
            _sync(device)
            t1 = time.perf_counter()
            loss.backward()
            _sync(device)
            t2 = time.perf_counter()
            del traj, loss
            fwd_ms.append((t1 - t0) / steps * 1e3)
            bwd_ms.append((t2 - t1) / steps * 1e3)
            kernels.append(_kernel_ms(adj, args.replicates, device))
        out["grad_forward_step_ms"] = statistics.median(fwd_ms)
        out["backward_step_ms"] = statistics.median(bwd_ms)
        out["grad_runs_ms"] = {"forward": fwd_ms, "backward": bwd_ms}
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        out["grad_finite"] = bool(grads) and all(bool(torch.isfinite(g).all()) for g in grads)
    out["kernel_ms"] = statistics.median(kernels)
    out["kernel_runs_ms"] = kernels
    out["kernel_bytes"] = _kernel_bytes(adj, args.replicates)
    out["peak_rss_mb"] = memory.peak_rss() / 2**20  # VmHWM: ru_maxrss carries the parent's size across exec
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# --------------------------------------------------------------------------- driver


def machine_info(device: str) -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_start": os.getloadavg()}
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, IndexError):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_worker(args, phase: str, num_people: float, compile_: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", phase, "--num-people", str(int(num_people)),
           "--compile", compile_, "--steps", str(args.steps), "--grad-steps", str(args.grad_steps),
           "--repeat", str(args.repeat), "--device", args.device, "--replicates", str(args.replicates)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ)
    if args.thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        return {"phase": phase, "num_people": int(num_people), "compile": compile_ == "on",
                "error": " | ".join(tail)}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def derive(fwd: dict, grad: dict | None) -> dict:
    """The row of the table for one (size, compile) configuration."""
    row = {k: fwd.get(k) for k in ("num_people", "compile", "edges", "venues", "build_s", "generate_s", "prepare_s",
                                   "kernel_ms", "forward_step_ms", "forward_s", "warmup_s", "peak_rss_mb",
                                   "estimate_mb", "peak_cuda_mb", "threads", "attack_rate", "error")}
    if "forward_step_ms" in fwd:
        step_s = fwd["forward_step_ms"] / 1e3
        row["ratio_step_kernel"] = fwd["forward_step_ms"] / fwd["kernel_ms"]
        row["edges_per_s"] = 2 * fwd["edges"] / step_s
        row["kernel_gbps"] = fwd["kernel_bytes"] / (fwd["kernel_ms"] / 1e3) / 1e9
        row["step_gbps"] = fwd["kernel_bytes"] / step_s / 1e9
        row["agent_step_s"] = step_s / fwd["num_people"]
    if grad:
        if "error" in grad:
            row["grad_error"] = grad["error"]
        else:
            row.update(grad_forward_step_ms=grad["grad_forward_step_ms"], backward_step_ms=grad["backward_step_ms"],
                       grad_kernel_ms=grad["kernel_ms"], grad_peak_rss_mb=grad["peak_rss_mb"],
                       grad_estimate_mb=grad["estimate_mb"], grad_finite=grad["grad_finite"],
                       grad_peak_cuda_mb=grad.get("peak_cuda_mb"))
            row["ratio_backward_forward"] = grad["backward_step_ms"] / grad["grad_forward_step_ms"]
            if "forward_step_ms" in fwd:
                row["ratio_backward_nograd_forward"] = grad["backward_step_ms"] / fwd["forward_step_ms"]
    return row


def _f(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def markdown(rows, info, args, command) -> str:
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, {info.get('memory_gib', '?')} GiB; "
             f"torch {info['torch']}, Python {info['python']}; device {args.device}"
             + (f" ({info['gpu']})" if "gpu" in info else "")
             + ("; THP_MEM_ALLOC_ENABLE=1" if args.thp else "")
             + f"; load average at start {info['load_start'][0]:.2f}, at end {info['load_end'][0]:.2f}.",
             f"Command: `{command}`", "",
             "| people | compile | edges | build s | kernel ms | step ms | step/kernel | 100 steps s "
             "| edges/s | GB/s step (kernel) | fwd peak MB (est.) | grad fwd ms | bwd ms | bwd/fwd "
             "| grad peak MB (est.) |",
             "|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['num_people']:,} | {'on' if r['compile'] else 'off'} | error: {r['error']} |"
                         + " |" * 12)
            continue
        per100 = r["forward_step_ms"] * 100 / 1e3 if r.get("forward_step_ms") else None
        lines.append(
            f"| {r['num_people']:,} | {'on' if r['compile'] else 'off'} | {r['edges']:,} | {_f(r['build_s'], '{:.2f}')} "
            f"| {_f(r['kernel_ms'])} | {_f(r.get('forward_step_ms'))} | {_f(r.get('ratio_step_kernel'), '{:.2f}')} "
            f"| {_f(per100, '{:.2f}')} | {_f(r.get('edges_per_s'), '{:.2e}')} "
            f"| {_f(r.get('step_gbps'))} ({_f(r.get('kernel_gbps'))}) "
            f"| {_f(r['peak_rss_mb'], '{:.0f}')} ({_f(r['estimate_mb'], '{:.0f}')}) "
            f"| {_f(r.get('grad_forward_step_ms'))} | {_f(r.get('backward_step_ms'))} "
            f"| {_f(r.get('ratio_backward_forward'), '{:.2f}')} "
            f"| {_f(r.get('grad_peak_rss_mb'), '{:.0f}')} ({_f(r.get('grad_estimate_mb'), '{:.0f}')}) |")
    lines += ["", f"step: forward (no grad) time per step over {args.steps} steps (median of {args.repeat} runs); "
              "kernel: A x + A^T p on the same layout (int32 CSR), median over all rounds in the same process; "
              f"grad: 4 learnable betas, per-step checkpointing, {args.grad_steps} steps; "
              "peak MB: the peak RSS (VmHWM) of a fresh process (build included); est.: lpm_graph.memory."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e5, 1e6], help="population sizes (none: only --nyc)")
    ap.add_argument("--nyc", action="store_true", help="also 8.4e6 people (forward; grad only with --nyc-grad)")
    ap.add_argument("--nyc-grad", action="store_true", help="also the grad run at 8.4e6 (memory permitting)")
    ap.add_argument("--compile", choices=["off", "on", "both"], default="both")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--grad-steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per configuration and phase (median)")
    ap.add_argument("--replicates", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-grad", action="store_true", help="skip the forward+backward runs")
    ap.add_argument("--thp", action="store_true",
                    help="run the workers with THP_MEM_ALLOC_ENABLE=1 (torch: page-aligned CPU tensors, huge pages)")
    ap.add_argument("--json", default="bench.json")
    ap.add_argument("--markdown", default="bench.md")
    ap.add_argument("--worker", choices=["forward", "grad"], help=argparse.SUPPRESS)
    ap.add_argument("--num-people", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        args.phase = args.worker
        print(json.dumps(worker(args)))
        return None

    info = machine_info(args.device)
    sizes = list(args.sizes) + ([8.4e6] if args.nyc else [])
    variants = ["off", "on"] if args.compile == "both" else [args.compile]
    rows, raw = [], []
    for n in sizes:
        for c in variants:
            fwd = run_worker(args, "forward", n, c)
            raw.append(fwd)
            grad = None
            want_grad = not args.no_grad and (n < 8e6 or args.nyc_grad)
            if want_grad and "error" not in fwd:
                grad = run_worker(args, "grad", n, c)  # refuses itself (memory.check_memory) if it cannot fit
                raw.append(grad)
            row = derive(fwd, grad)
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    info["load_end"] = os.getloadavg()
    command = "python scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "command": command,
                                           "rows": rows, "raw": raw}, indent=2) + "\n")
    md = markdown(rows, info, args, command)
    Path(args.markdown).write_text(md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
