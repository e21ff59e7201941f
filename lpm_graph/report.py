"""``report.html``: one self-contained page per run, built from the run directory's files only.

Every task ends with :func:`finish`, which records what was run in ``run.json``
(the command line as given, the versions of Python, torch, torch_geometric,
plotly and lpm_graph, the git commit of the lpm_graph source tree when it is a
checkout, the observables of the model — their panels, units and groupings, the
meaning of ``trajectory.parquet``'s columns — and the composed config when Hydra
wrote none), writes ``fit.csv`` for a calibration, and, unless
``task.report=false``, calls :func:`build_report`.

:func:`build_report` reads only files of the run directory, so ``lpm-graph
report <run dir>`` rebuilds the page of an old run; with the same lpm_graph and
plotly it is byte for byte the page written at run time (no build time, fixed
figure ids, plotly's JavaScript embedded once).  What it shows, where the files
are there:

* the run: command, task, seed, versions, git commit, the config
  (``.hydra/config.yaml``, else ``run.json``'s);
* the summary (``summary.json``, ``fitted_params.json``, ``plan.json`` or
  ``population_summary.json``) as a table, and its ``privacy`` entry if any;
* ``trajectory.parquet`` (or ``.csv``): one figure per observable panel, the
  mean over replicates as lines, the replicates' range as a band, the grouped
  series ``<observable>_<grouping>_<label>`` behind one button per grouping;
  observables in a panel that names decisions again as shares of their node
  type;
* calibrate: ``loss.csv`` (loss and fitted values per iteration), ``fit.csv``
  (observed vs fitted), ``posterior.parquet`` (histograms and pairs) if present;
* analyze: ``sensitivity.csv``, ``counterfactuals.csv``, ``policy.csv`` and
  ``policy_parameters.csv``;
* plan: ``plan.txt``.

The PNGs the tasks write stay as they are (for papers); the page links them.
Nothing here imports torch: a report of a run takes about a second.
"""
from __future__ import annotations

import html
import json
import math
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from lpm_graph.errors import RunDirectoryError

__all__ = ["build_report", "finish", "record_run", "write_fit", "REPORT", "RUN_INFO", "SUMMARY_FILES"]

REPORT = "report.html"
RUN_INFO = "run.json"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
#: the file each task writes last, whose presence says the run finished
SUMMARY_FILES = {"simulate": "summary.json", "analyze": "summary.json", "calibrate": "fitted_params.json",
                 "plan": "plan.json", "build_population": "population_summary.json"}
#: plotly's options of every figure (fixed: the page is the same whenever it is built)
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
#: columns of posterior.parquet that index samples rather than hold a parameter
POSTERIOR_INDEX = ("sample", "draw", "chain", "iteration", "step", "weight", "log_weight")
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


# ---------------------------------------------------------------------------------------------- at run time

def _git_commit() -> dict | None:
    """The commit of the lpm_graph source tree (and whether it has changes), when it is a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return None  # an installed package: no commit of its own
        commit = git("rev-parse", "HEAD").stdout.strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty} if commit else None


def _versions() -> dict:
    import plotly
    import torch
    import torch_geometric

    import lpm_graph

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__, "plotly": plotly.__version__,
            "lpm_graph": lpm_graph.__version__}


def record_run(cfg, output_dir, observables=None) -> Path:
    """Write ``run.json``: what was run (command, versions, commit), the observables, the config if Hydra wrote none.

    ``observables``: the model's (name -> :class:`~lpm_graph.core.observe.Observable`), in the order it declares them.
    """
    from omegaconf import OmegaConf

    from lpm_graph.tasks.simulate import atomic_write

    out = Path(output_dir)
    info = {"argv": list(sys.argv), "task": str(cfg.task.name), "versions": _versions(), "git": _git_commit()}
    if not (out / HYDRA_CONFIG).is_file():  # a task called as a function: keep the config it ran with
        info["config"] = OmegaConf.to_yaml(cfg)
    if observables is not None:
        info["observables"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(o).items()}
                               for o in observables.values()]
    atomic_write(out / RUN_INFO, lambda p: p.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n"))
    return out / RUN_INFO


def write_fit(output_dir, obs, pred, obs_model, model) -> Path:
    """Write ``fit.csv``: per observed series and step, the observation and the fitted prediction (long format).

    Columns: ``series, observable, group, reporting, delay, unit, step, observed, fitted`` (``observed`` empty
    where the data have no value).
    """
    import pandas as pd

    from lpm_graph.tasks.simulate import atomic_write

    steps = obs.steps.tolist()
    rows = []
    for name, yhat in pred.items():
        source, group, reporting, delay = obs_model.series[name]
        unit = model.observables[source].unit if source in model.observables else ""
        observed = obs.values[name].double().tolist()
        fitted = yhat.detach().double().cpu().tolist()
        for step, y, f in zip(steps, observed, fitted):
            rows.append({"series": name, "observable": source, "group": f"{group[0]} {group[1]}" if group else "",
                         "reporting": str(reporting), "delay": int(delay or 0), "unit": unit, "step": int(step),
                         "observed": y, "fitted": f})
    frame = pd.DataFrame(rows, columns=["series", "observable", "group", "reporting", "delay", "unit", "step",
                                        "observed", "fitted"])
    path = Path(output_dir) / "fit.csv"
    atomic_write(path, lambda p: frame.to_csv(p, index=False))
    return path


def finish(cfg, output_dir, *, observables=None, fit=None) -> Path | None:
    """The last call of every task: ``fit.csv`` (``fit``: ``(obs, pred, obs_model, model)``), ``run.json``, then
    ``report.html`` unless ``task.report`` is false; returns the report's path (None when not written)."""
    out = Path(output_dir)
    if fit is not None:
        write_fit(out, *fit)
    record_run(cfg, out, observables)
    if not cfg.task.get("report", True):
        return None
    return build_report(out)


# ---------------------------------------------------------------------------------------- from the run's files

class _Run:
    """What a run directory holds: its config, run.json, the task and its summary (checked on the way)."""

    def __init__(self, path: Path):
        import yaml

        self.path = path
        if not path.is_dir():
            raise RunDirectoryError(f"{path} is not a run directory: no such folder")
        info_file = path / RUN_INFO
        self.info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        if (path / HYDRA_CONFIG).is_file():
            self.config_source, self.config_text = str(HYDRA_CONFIG), (path / HYDRA_CONFIG).read_text()
        elif "config" in self.info:
            self.config_source, self.config_text = f"{RUN_INFO} (no {HYDRA_CONFIG})", self.info["config"]
        else:
            raise RunDirectoryError(f"{path} is not a run directory: it has neither {HYDRA_CONFIG} nor {RUN_INFO} "
                                    "(what lpm-graph writes into every run's folder)")
        self.config = yaml.safe_load(self.config_text) or {}
        self.task = str((self.config.get("task") or {}).get("name") or self.info.get("task") or "")
        if self.task not in SUMMARY_FILES:
            raise RunDirectoryError(f"{path} is not a run directory: its config names no known task "
                                    f"(task.name: {self.task or 'missing'}; known: {', '.join(SUMMARY_FILES)})")
        summary = path / SUMMARY_FILES[self.task]
        if not summary.is_file():
            raise RunDirectoryError(f"{path} is not a finished task={self.task} run: it has no {summary.name}")
        self.summary = json.loads(summary.read_text())

    def file(self, name: str) -> Path | None:
        p = self.path / name
        return p if p.is_file() else None


class _Page:
    """The page being written: sections in order, figures with ids numbered in the order they are added."""

    def __init__(self):
        self.sections: list[tuple[str, str, str]] = []  # (id, title, body)
        self._figures = 0

    def section(self, title: str, *parts: str) -> None:
        ident = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
        self.sections.append((f"s{len(self.sections) + 1}-{ident}", title, "\n".join(p for p in parts if p)))

    def figure(self, fig, css_class: str = "figure") -> str:
        import plotly.io as pio

        self._figures += 1
        fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 45})
        body = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"figure-{self._figures}",
                           config=PLOT_CONFIG, validate=True)
        return f'<div class="{css_class}">{body}</div>'

    def render(self, title: str) -> str:
        from plotly.offline import get_plotlyjs

        nav = " · ".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, t, _ in self.sections)
        body = "\n".join(f'<section id="{i}"><h2>{html.escape(t)}</h2>\n{b}\n</section>' for i, t, b in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n"
                f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
                f"<h1>{html.escape(title)}</h1>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { font-size: 1em; } nav { font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
.note { color: #555; font-size: 0.9em; }
"""


def _text(value) -> str:
    """A value as table text: numbers to 7 significant digits, NaN and None empty, others as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.7g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return _text(value.item())
    except ImportError:  # pragma: no cover
        pass
    return json.dumps(value, separators=(", ", ": "))


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f'<td class="num">{html.escape(_text(v))}</td>' if numeric else f"<td>{html.escape(_text(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    """``{'a': {'b': 1}}`` -> ``[('a.b', 1)]``; lists stay whole."""
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, value)]


def _frame_table(frame, limit: int = 500) -> str:
    rows = frame.head(limit).values.tolist()
    more = f'<p class="note">first {limit} of {len(frame)} rows</p>' if len(frame) > limit else ""
    return _table([str(c) for c in frame.columns], rows) + more


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>\n{body}\n</details>"


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# ------------------------------------------------------------------------------------------------- sections

def _run_section(page: _Page, run: _Run) -> None:
    info = run.info
    argv = info.get("argv")
    command = shlex.join(argv) if argv else "not recorded (run.json is missing: a run from before it was written)"
    seed = run.summary.get("seed", run.config.get("seed")) if isinstance(run.summary, dict) else run.config.get("seed")
    rows = [["task", run.task], ["command", command], ["seed", seed]]
    versions = info.get("versions") or {}
    rows += [[f"{name} version", versions.get(name, "not recorded")]
             for name in ("python", "torch", "torch_geometric", "lpm_graph", "plotly")]
    git = info.get("git")
    rows.append(["git commit", (git["commit"] + (" (with uncommitted changes)" if git.get("dirty") else ""))
                 if git else ("not a git checkout" if "git" in info else "not recorded")])
    page.section("Run", _table(["", ""], rows),
                 _details(f"composed config ({run.config_source})", f"<pre>{html.escape(run.config_text)}</pre>"))


def _summary_section(page: _Page, run: _Run) -> None:
    name = SUMMARY_FILES[run.task]
    summary = run.summary
    if isinstance(summary, list):  # plan.json: one row per process
        keys = list(dict.fromkeys(k for row in summary for k in row))
        page.section(f"Summary ({name})", _table(keys, [[row.get(k) for k in keys] for row in summary]))
        return
    parts = []
    outcomes = summary.get("outcomes")
    if isinstance(outcomes, dict) and outcomes:
        parts.append("<h3>outcomes</h3>" + _table(
            ["outcome", "mean", "sd", "unit", "definition"],
            [[k, v.get("mean"), v.get("sd"), v.get("unit"), v.get("definition")] for k, v in outcomes.items()]))
    rest = {k: v for k, v in summary.items() if k not in ("outcomes", "privacy")}
    flat = _flatten(rest)
    parts.append(_details(f"every entry ({len(flat)})", _table(["entry", "value"], [[k, v] for k, v in flat]),
                          open_=len(flat) <= 40))
    page.section(f"Summary ({name})", *parts)
    if summary.get("privacy") is not None:
        page.section("Private aggregation", _table(["entry", "value"],
                                                   [[k, v] for k, v in _flatten(summary["privacy"], "privacy")]))


def _observables(run: _Run, columns: list[str]) -> list[dict]:
    """The observables of the trajectory's columns: ``run.json``'s, else read off the column names alone."""
    declared = run.info.get("observables")
    if declared:
        return [o for o in declared if o["name"] in columns]
    # an old run: a column is a grouped series of another when it starts with that column's name and "_"
    names = [c for c in columns if c not in ("step", "replicate")]
    bases = [c for c in names if not any(c.startswith(f"{b}_") for b in names if b != c)]
    return [{"name": b, "panel": b, "kind": "", "unit": "", "style": "line", "by": [""], "source": ""} for b in bases]


def _series_groups(o: dict, columns: list[str]) -> dict[str, list[tuple[str, str]]]:
    """grouping -> ``[(label, column)]`` of observable ``o`` (a grouping of "" for an old run's columns)."""
    out = {}
    for grouping in o.get("by") or []:
        prefix = f"{o['name']}_{grouping}_" if grouping else f"{o['name']}_"
        found = [(c[len(prefix):], c) for c in columns if c.startswith(prefix)]
        if found:
            out[grouping or "group"] = found
    return out


def _band_traces(go, mean, lo, hi, name: str, colour: str, replicates: int, visible: bool) -> list:
    """A series as a line (its mean over replicates) over a band (their min-max range, when there are several)."""
    x = mean.index.to_numpy()
    traces = []
    if replicates > 1:
        traces.append(go.Scatter(x=x, y=hi.to_numpy(), mode="lines", line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=name, visible=visible))
        traces.append(go.Scatter(x=x, y=lo.to_numpy(), mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_rgba(colour, 0.2), hoverinfo="skip", showlegend=False, legendgroup=name,
                                 visible=visible))
    traces.append(go.Scatter(x=x, y=mean.to_numpy(), mode="lines", name=name, line={"color": colour},
                             legendgroup=name, visible=visible))
    return traces


def _bar_traces(go, mean, lo, hi, name: str, colour: str, replicates: int) -> list:
    """A per-step series (events) as bars of its mean from step 1 on, whiskers over the replicates' range."""
    error = {"type": "data", "symmetric": False, "array": (hi - mean).to_numpy()[1:],
             "arrayminus": (mean - lo).to_numpy()[1:]} if replicates > 1 else None
    return [go.Bar(x=mean.index.to_numpy()[1:], y=mean.to_numpy()[1:], name=name, marker_color=colour,
                   opacity=0.75, error_y=error)]


def _trajectory_sections(page: _Page, run: _Run) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    path = run.file("trajectory.parquet") or run.file("trajectory.csv")
    if path is None:
        return
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    columns = list(frame.columns)
    replicates = int(frame["replicate"].nunique()) if "replicate" in frame else 1
    by_step = frame.drop(columns=[c for c in ("replicate",) if c in frame]).groupby("step", sort=True)
    mean, lo, hi = by_step.mean(), by_step.min(), by_step.max()
    observables = _observables(run, columns)
    panels: dict[str, list[dict]] = {}
    for o in observables:
        panels.setdefault(o.get("panel") or o.get("kind") or o["name"], []).append(o)
    note = (f"lines: mean of {replicates} replicates; bands (and bar whiskers): their min-max range"
            if replicates > 1 else "one replicate")
    figures = []
    for panel, items in panels.items():
        fig = go.Figure()
        views: list[str] = []  # per trace: "total" or the grouping it shows
        for k, o in enumerate(items):
            col, colour = o["name"], COLOURS[k % len(COLOURS)]
            maker = _bar_traces if o.get("style") == "bar" else _band_traces
            extra = () if o.get("style") == "bar" else (True,)
            for t in maker(go, mean[col], lo[col], hi[col], col, colour, replicates, *extra):
                fig.add_trace(t)
                views.append("total")
        groupings: list[str] = []
        for o in items:
            for grouping, found in _series_groups(o, columns).items():
                if grouping not in groupings:
                    groupings.append(grouping)
                for j, (label, col) in enumerate(found):
                    for t in _band_traces(go, mean[col], lo[col], hi[col], col, COLOURS[j % len(COLOURS)],
                                          replicates, False):
                        fig.add_trace(t)
                        views.append(grouping)
        units = sorted({o.get("unit") for o in items if o.get("unit")})
        fig.update_layout(title={"text": panel, "x": 0}, xaxis_title="step", height=420,
                          yaxis_title=", ".join(units) if units else panel, barmode="overlay", hovermode="x")
        if groupings:
            buttons = [{"label": "total", "method": "update",
                        "args": [{"visible": [v == "total" for v in views]}]}]
            buttons += [{"label": f"by {g}", "method": "update", "args": [{"visible": [v == g for v in views]}]}
                        for g in groupings]
            fig.update_layout(updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons,
                                            "x": 0.5, "xanchor": "center", "y": 1.02, "yanchor": "bottom",
                                            "showactive": True}])
        figures.append(page.figure(fig, "figure panel"))
    page.section(f"Observables ({path.name})", f'<p class="note">{note}; one figure per panel; the buttons show '
                 "the series by group</p>", *figures)
    _decision_section(page, run, panels, mean, lo, hi, replicates)


def _decision_section(page: _Page, run: _Run, panels, mean, lo, hi, replicates) -> None:
    """Observables of panels that name decisions, as shares of their node type (count and sum kinds)."""
    import plotly.graph_objects as go

    nodes = run.summary.get("num_nodes") if isinstance(run.summary, dict) else None
    figures = []
    for panel, items in panels.items():
        if "decision" not in panel.lower():
            continue
        fig = go.Figure()
        for k, o in enumerate(items):
            col, node_type = o["name"], (o.get("source") or "").split(".", 1)[0]
            scale = 1.0
            if o.get("kind") in ("count", "sum"):
                n = nodes.get(node_type) if isinstance(nodes, dict) else None
                if not n:
                    continue
                scale = 1.0 / float(n)
            for t in _band_traces(go, mean[col] * scale, lo[col] * scale, hi[col] * scale, col,
                                  COLOURS[k % len(COLOURS)], replicates, True):
                fig.add_trace(t)
        if fig.data:
            fig.update_layout(title={"text": f"{panel}: share", "x": 0}, xaxis_title="step", yaxis_title="share",
                              height=380, hovermode="x")
            figures.append(page.figure(fig))
    if figures:
        page.section("Behaviour decisions", '<p class="note">each decision as a share of its node type '
                     "(counts divided by the node count of summary.json)</p>", *figures)


def _calibrate_sections(page: _Page, run: _Run) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    loss_file = run.file("loss.csv")
    if loss_file is not None:
        loss = pd.read_csv(loss_file)
        fig = go.Figure(go.Scatter(x=loss["iteration"], y=loss["loss"], mode="lines+markers", name="loss"))
        fig.update_layout(title={"text": "calibration loss", "x": 0}, xaxis_title="iteration", yaxis_title="loss",
                          yaxis_type="log", height=360)
        parts = [page.figure(fig)]
        params = [c for c in loss.columns if c not in ("iteration", "loss")]
        if params:
            fig = go.Figure([go.Scatter(x=loss["iteration"], y=loss[c], mode="lines", name=c,
                                        line={"color": COLOURS[k % len(COLOURS)]}) for k, c in enumerate(params)])
            fig.update_layout(title={"text": "fitted values after each iteration", "x": 0}, xaxis_title="iteration",
                              yaxis_title="value", height=380, hovermode="x")
            parts.append(page.figure(fig))
        parts.append(_details("loss.csv", _frame_table(loss)))
        page.section("Loss (loss.csv)", *parts)
    fit_file = run.file("fit.csv")
    if fit_file is not None:
        fit = pd.read_csv(fit_file, keep_default_na=False, na_values=[""])
        parts = []
        for name, sub in fit.groupby("series", sort=False):
            first = sub.iloc[0]
            what = first["observable"] + (f" ({first['group']})" if isinstance(first["group"], str) and
                                          first["group"] else "")
            scaled = [f"x {first['reporting']}" if str(first["reporting"]) not in ("1", "1.0") else "",
                      f"{first['delay']} steps later" if int(first["delay"]) else ""]
            unit = first["unit"] if isinstance(first["unit"], str) else ""
            fig = go.Figure([
                go.Scatter(x=sub["step"], y=sub["observed"], mode="markers", name="observed",
                           marker={"color": "black", "size": 5}),
                go.Scatter(x=sub["step"], y=sub["fitted"], mode="lines", name="fitted", line={"color": "#d62728"})])
            fig.update_layout(title={"text": str(name), "x": 0}, xaxis_title="step", height=340, hovermode="x",
                              yaxis_title=what + (f", {unit}" if unit else "") +
                              "".join(f" {s}" for s in scaled if s))
            parts.append(page.figure(fig))
        page.section("Fit (fit.csv): observed vs fitted", *parts)
    posterior = run.file("posterior.parquet")
    if posterior is not None:
        _posterior_section(page, pd.read_parquet(posterior))


def _posterior_section(page: _Page, samples) -> None:
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    params = [c for c in samples.columns if c not in POSTERIOR_INDEX and np.issubdtype(samples[c].dtype, np.number)]
    if not params:
        page.section("Posterior (posterior.parquet)", '<p class="note">no numeric parameter columns</p>')
        return
    weights = samples["weight"].to_numpy(dtype=float) if "weight" in samples else None
    rows = []
    for c in params:
        v = samples[c].to_numpy(dtype=float)
        q = np.quantile(v, [0.025, 0.5, 0.975])
        rows.append([c, float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, *map(float, q)])
    if len(samples) < 2:  # task.method=map writes its point as a one-draw posterior: a table, no histograms
        page.section("Posterior (posterior.parquet)", '<p class="note">a point estimate: one draw '
                     '(task.method=map)</p>', _table(["parameter", "mean", "sd", "2.5%", "50%", "97.5%"], rows))
        return
    cols = min(3, len(params))
    nrows = (len(params) + cols - 1) // cols
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=params)
    for k, c in enumerate(params):
        fig.add_trace(go.Histogram(x=samples[c].to_numpy(dtype=float), y=weights, histfunc="sum" if weights is not
                                   None else "count", name=c, showlegend=False,
                                   marker_color=COLOURS[k % len(COLOURS)]), row=k // cols + 1, col=k % cols + 1)
    fig.update_layout(title={"text": f"posterior marginals ({len(samples)} samples)", "x": 0},
                      height=260 * nrows + 80)
    parts = [_table(["parameter", "mean", "sd", "2.5%", "50%", "97.5%"], rows), page.figure(fig)]
    if 2 <= len(params) <= 8:
        shown = samples.iloc[:: max(1, len(samples) // 2000)]
        fig = go.Figure(go.Splom(dimensions=[{"label": c, "values": shown[c].to_numpy(dtype=float)} for c in params],
                                 diagonal_visible=False, showupperhalf=False, marker={"size": 3, "opacity": 0.4}))
        fig.update_layout(title={"text": "posterior pairs", "x": 0}, height=180 * len(params) + 100)
        parts.append(page.figure(fig))
    page.section("Posterior (posterior.parquet)", *parts)


def _difference_figure(page, go, table, outcome: str, title: str, against: str) -> str:
    sub = table[table["outcome"] == outcome]
    fig = go.Figure(go.Bar(
        x=sub["scenario"].astype(str), y=sub["diff_mean"],
        error_y={"type": "data", "symmetric": False, "array": (sub["diff_ci_high"] - sub["diff_mean"]).to_numpy(),
                 "arrayminus": (sub["diff_mean"] - sub["diff_ci_low"]).to_numpy()},
        marker_color=COLOURS[0], name=outcome))
    fig.update_layout(title={"text": f"{title}: {outcome}", "x": 0}, yaxis_title=f"difference to {against}",
                      height=340)
    return page.figure(fig)


def _analyze_sections(page: _Page, run: _Run) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    sens = run.file("sensitivity.csv")
    if sens is not None:
        table = pd.read_csv(sens)
        parts = []
        for outcome, sub in table.groupby("outcome", sort=False):
            labels = [p + (f"[{e}]" if isinstance(e, str) and e else "") for p, e in zip(sub["parameter"],
                                                                                          sub["element"])]
            spread = {}
            if "elasticity_low" in sub:  # over posterior draws: the mean and the 95% range of the draws
                spread = {"error_x": {"type": "data", "symmetric": False,
                                      "array": (sub["elasticity_high"] - sub["elasticity"]).to_numpy(),
                                      "arrayminus": (sub["elasticity"] - sub["elasticity_low"]).to_numpy()}}
            fig = go.Figure(go.Bar(x=sub["elasticity"], y=labels, orientation="h", marker_color=COLOURS[0],
                                   customdata=sub["derivative"], name=str(outcome), **spread,
                                   hovertemplate="%{y}: elasticity %{x:.4g}, derivative %{customdata:.4g}"
                                                 "<extra></extra>"))
            fig.update_layout(title={"text": f"elasticity of {outcome}", "x": 0}, xaxis_title="elasticity",
                              height=max(260, 22 * len(sub) + 120), yaxis={"autorange": "reversed"})
            parts.append(page.figure(fig))
        if "draws" in table and len(table):
            parts.insert(0, f'<p class="note">mean over {int(table["draws"].iloc[0])} posterior draws, bars: the '
                            "2.5%-97.5% range of the draws (task.posterior)</p>")
        parts.append(_details("sensitivity.csv", _frame_table(table)))
        page.section("Sensitivity (sensitivity.csv)", *parts)
    for name, title in (("counterfactuals.csv", "Counterfactuals"), ("policy.csv", "Policy")):
        f = run.file(name)
        if f is None:
            continue
        table = pd.read_csv(f)
        against = str(table["baseline"].iloc[0]) if "baseline" in table and len(table) else "baseline"
        if "draws" in table and len(table):
            parts = [f'<p class="note">paired differences to {html.escape(against)} over {int(table["draws"].iloc[0])} '
                     f"posterior draws, {int(table['replicates'].iloc[0])} replicates each (common random numbers "
                     "within and across draws); 95% intervals with parameter uncertainty and stochastic noise "
                     "(task.posterior)</p>"]
        else:
            parts = [f'<p class="note">paired differences to {html.escape(against)} with 95% intervals (common '
                     "random numbers)</p>"]
        parts += [_difference_figure(page, go, table, o, title.lower(), against)
                  for o in dict.fromkeys(table["outcome"])]
        if name == "policy.csv":
            trace = ((run.summary.get("analyses") or {}).get("policy") or {}).get("objective_trace")
            if trace:
                fig = go.Figure(go.Scatter(x=list(range(1, len(trace) + 1)), y=trace, mode="lines+markers",
                                           name="objective"))
                fig.update_layout(title={"text": "objective during the optimisation", "x": 0},
                                  xaxis_title="iteration", yaxis_title="objective", height=320)
                parts.append(page.figure(fig))
            values = run.file("policy_parameters.csv")
            if values is not None:
                parts.append("<h3>policy parameters (policy_parameters.csv)</h3>" + _frame_table(pd.read_csv(values)))
        parts.append(_details(name, _frame_table(table)))
        page.section(f"{title} ({name})", *parts)


def _files_section(page: _Page, run: _Run) -> None:
    names = sorted(p.name for p in run.path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name != REPORT)
    links = ", ".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a>' for n in names)
    page.section("Files", f"<p>{links}</p>")


def render(run_dir) -> str:
    """The text of ``report.html`` for the run directory ``run_dir`` (:class:`RunDirectoryError` if it is none)."""
    run = _Run(Path(run_dir))
    page = _Page()
    _run_section(page, run)
    _summary_section(page, run)
    _trajectory_sections(page, run)
    if run.task == "calibrate":
        _calibrate_sections(page, run)
    elif run.task == "analyze":
        _analyze_sections(page, run)
    elif run.task == "plan" and run.file("plan.txt"):
        page.section("Plan (plan.txt)", f"<pre>{html.escape(run.file('plan.txt').read_text())}</pre>")
    _files_section(page, run)
    return page.render(f"lpm_graph: task={run.task}")


def build_report(run_dir) -> Path:
    """Write ``report.html`` into the run directory ``run_dir`` from its files; return its path.

    Written through a temporary and renamed (a reader never sees half a page), with the user's umask.
    """
    import os
    import tempfile

    path = Path(run_dir)
    text = render(path)
    fd, name = tempfile.mkstemp(prefix=".report.", suffix=".tmp.html", dir=path)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.write_text(text, encoding="utf-8")
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path / REPORT)
    finally:
        tmp.unlink(missing_ok=True)
    return path / REPORT
