"""report.html: every task writes one, self-contained, from the run directory's files; rebuilt it is the same page."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from lpm_graph import cli, tasks
from lpm_graph.errors import CalibrationWarning, RunDirectoryError
from lpm_graph.report import REPORT, RUN_INFO, SUMMARY_FILES, build_report
from tests.analysis.conftest import one_thread
from tests.conftest import compose_config

SMALL = ["population.num_people=1500", "steps=5", "progress=false"]
RUNS = {
    "simulate": [*SMALL, "model=seird", "replicates=2", "model.params.seir.initial_infected=5"],
    "calibrate": ["task=calibrate", "population.num_people=1500", "progress=false", "task.iterations=1",
                  "task.checkpoint_every=0", "model.params.seir.initial_infected=5"],
    "analyze": ["task=analyze", *SMALL, "task.replicates=2", "threads=null", "model.params.seir.initial_infected=5",
                "task.policy.iterations=1", "task.parameters=[transmission.beta_school]"],
    "plan": ["task=plan", "model=seird"],
    "build_population": ["task=build_population", "population.num_people=1500"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run directory of every task, the task called as a function (no Hydra: run.json keeps the config)."""
    out = {}
    for name, overrides in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        cfg = compose_config(overrides)
        with one_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)  # 1,500 people against the shipped observations
            summary = tasks.get(name)(cfg, folder)
        out[name] = (cfg, summary, folder)
    return out


def page(folder) -> str:
    return (folder / REPORT).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(RUNS))
def test_every_task_writes_a_self_contained_report_of_what_was_run(runs, name):
    cfg, summary, folder = runs[name]
    text = page(folder)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # self-contained: plotly's JavaScript inline, nothing fetched from anywhere
    assert not re.search(r"<script[^>]+src=", text) and 'src="http' not in text and "<link" not in text
    assert "Plotly.newPlot" in text or name in ("plan", "build_population")
    info = json.loads((folder / RUN_INFO).read_text())
    assert info["task"] == name and set(info["versions"]) == {"python", "torch", "torch_geometric", "plotly",
                                                              "lpm_graph"}
    for version in info["versions"].values():
        assert f"<td>{version}</td>" in text
    assert f"num_people: {cfg.population.num_people}" in text  # the composed config
    assert f"task={name}" in text
    # the summary's values as a table
    on_disk = json.loads((folder / SUMMARY_FILES[name]).read_text())
    if name in ("simulate", "analyze"):
        assert f"<td>{on_disk['config_hash']}</td>" in text and f'<td class="num">{cfg.seed}</td>' in text
        assert f"{on_disk['outcomes']['attack_rate']['mean']:.7g}" in text
    elif name == "calibrate":
        assert f'<td class="num">{on_disk["final_loss"]:.7g}</td>' in text
    elif name == "build_population":
        assert f'<td class="num">{on_disk["num_nodes"]}</td>' in text
    else:
        assert "<td>SEIR</td>" in text and "seir.fatality" in text


def test_simulate_has_one_plot_per_observable_panel_with_groups_and_bands(runs):
    _, _, folder = runs["simulate"]
    text = page(folder)
    info = json.loads((folder / RUN_INFO).read_text())
    panels = list(dict.fromkeys(o["panel"] for o in info["observables"]))
    assert panels == ["compartments", "new infections", "deaths"]
    assert text.count('<div class="figure panel">') == len(panels)
    for panel in panels:
        assert f'"text":"{panel}"' in text
    # the grouped series (new_infections by age) behind a button; two replicates: a band of their range
    assert '"label":"by age"' in text and '"name":"new_infections_age_20-30"' in text
    assert '"fill":"tonexty"' in text
    # what the page links: the task's outputs, the PNG kept as it was
    assert '<a href="trajectory.png">' in text and (folder / "trajectory.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_shows_loss_fit_and_a_posterior_when_there_is_one(runs, tmp_path):
    _, _, folder = runs["calibrate"]
    text = page(folder)
    assert "Loss (loss.csv)" in text and "Fit (fit.csv): observed vs fitted" in text
    # map writes its point as a one-draw posterior: a table, not histograms of one value
    assert "a point estimate: one draw" in text and "posterior marginals" not in text
    fit = pd.read_csv(folder / "fit.csv")
    assert list(fit.columns) == ["series", "observable", "group", "reporting", "delay", "unit", "step", "observed",
                                 "fitted"]
    assert set(fit.series) == {f"cases_{g}" for g in ("0-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70",
                                                       "70-80", "80+")}
    assert (fit.observable == "new_infections").all() and (fit.delay == 3).all()
    for series in fit.series.unique():
        assert f'"text":"{series}"' in text
    # a posterior of samples (columns per parameter), as a posterior method writes it: histograms and pairs
    copy = tmp_path / "with_posterior"
    shutil.copytree(folder, copy)
    pd.DataFrame({"sample": range(50), "transmission.beta_school": [0.3 + 0.001 * i for i in range(50)],
                  "observation.reporting_fraction": [0.5 - 0.002 * i for i in range(50)]}
                 ).to_parquet(copy / "posterior.parquet")
    text = build_report(copy).read_text()
    assert "Posterior (posterior.parquet)" in text and '"type":"histogram"' in text and '"type":"splom"' in text
    assert "<td>transmission.beta_school</td>" in text and "<td>sample</td>" not in text


def test_analyze_shows_sensitivity_counterfactuals_and_policy(runs):
    _, summary, folder = runs["analyze"]
    text = page(folder)
    for section in ("Sensitivity (sensitivity.csv)", "Counterfactuals (counterfactuals.csv)", "Policy (policy.csv)",
                    "policy parameters (policy_parameters.csv)", "objective during the optimisation"):
        assert section in text, section
    assert "elasticity of attack_rate" in text and "transmission.beta_school" in text
    for png in ("sensitivity.png", "counterfactuals.png", "policy.png"):
        assert (folder / png).is_file() and f'<a href="{png}">' in text


@pytest.mark.parametrize("name", list(RUNS))
def test_a_rebuilt_report_is_the_written_one(runs, name, monkeypatch, capsys):
    _, _, folder = runs[name]
    written = (folder / REPORT).read_bytes()
    (folder / REPORT).unlink()
    monkeypatch.setattr(sys, "argv", ["lpm-graph", "report", str(folder)])
    cli.main()
    assert f"lpm-graph: report written: {folder / REPORT}" in capsys.readouterr().err
    assert (folder / REPORT).read_bytes() == written
    assert build_report(folder).read_bytes() == written
    assert not list(folder.glob(".*tmp*")), "no temporary left behind"


def test_a_hydra_run_records_its_command_line_and_config(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    argv = ["lpm-graph", "task=plan", "model=opinion", f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    cli.main()
    capsys.readouterr()
    info = json.loads((run_dir / RUN_INFO).read_text())
    assert info["argv"] == argv and "config" not in info  # Hydra's .hydra/config.yaml is the config
    text = page(run_dir)
    assert "lpm-graph task=plan model=opinion hydra.run.dir=" in text and "composed config (.hydra/config.yaml)" in text
    assert "<td>DeGroot</td>" in text
    written = page(run_dir)
    # an old run's folder, from before run.json: the page still builds, saying what was not recorded
    (run_dir / RUN_INFO).unlink()
    old = build_report(run_dir).read_text()
    assert "not recorded" in old and "<td>DeGroot</td>" in old and old != written


def test_not_a_run_directory_exits_2_naming_what_is_missing(tmp_path, monkeypatch, capsys):
    def report(*args):
        monkeypatch.setattr(sys, "argv", ["lpm-graph", "report", *map(str, args)])
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lpm-graph: error: ")
        return err

    assert "has neither .hydra/config.yaml nor run.json" in report(tmp_path)
    assert "no such folder" in report(tmp_path / "nowhere")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\ntask:\n  name: simulate\n")
    assert "is not a finished task=simulate run: it has no summary.json" in report(tmp_path)
    assert "usage: lpm-graph report <run dir>" in report()
    with pytest.raises(RunDirectoryError, match="no summary.json"):
        build_report(tmp_path)
    assert not (tmp_path / REPORT).exists()


def test_decision_shares_and_private_aggregation_where_a_run_has_them(runs, tmp_path):
    _, _, folder = runs["simulate"]
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    info = json.loads((copy / RUN_INFO).read_text())
    for o in info["observables"]:
        if o["name"] == "I":
            o["panel"] = "isolation decisions"
    (copy / RUN_INFO).write_text(json.dumps(info))
    summary = json.loads((copy / "summary.json").read_text())
    summary["privacy"] = {"mechanism": "secure sum", "epsilon": 0.5}
    (copy / "summary.json").write_text(json.dumps(summary))
    text = build_report(copy).read_text()
    assert "Behaviour decisions" in text and '"text":"isolation decisions: share"' in text
    assert "Private aggregation" in text and "<td>privacy.mechanism</td><td>secure sum</td>" in text
    assert text.count('<div class="figure panel">') == 4  # the decisions are a panel of their own too


def test_task_report_false_writes_no_page_but_keeps_what_rebuilds_it(tmp_path):
    cfg = compose_config(["task=plan", "task.report=false"])
    tasks.get("plan")(cfg, tmp_path)
    assert not (tmp_path / REPORT).exists() and (tmp_path / RUN_INFO).is_file()
    assert build_report(tmp_path).is_file()


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser():
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _headless(browser, url):
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=10000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc, console


@pytest.mark.slow
@pytest.mark.skipif(_browser() is None, reason=f"no headless browser on PATH (looked for {', '.join(BROWSERS)}; "
                    "on Debian: apt-get install chromium)")
@pytest.mark.parametrize("name", ["simulate", "calibrate", "analyze"])
def test_the_report_renders_in_a_headless_browser_without_console_messages(runs, name, tmp_path):
    browser = _browser()
    # the check itself sees what it looks for: a page that logs and throws is caught
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><script>console.error("x"); throw new Error("y")</script></body></html>')
    assert len(_headless(browser, bad.as_uri())[1]) == 2
    _, _, folder = runs[name]
    proc, console = _headless(browser, (folder / REPORT).as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console == []
    figures = re.findall(r'id="(figure-\d+)"', page(folder))
    assert figures
    rendered = re.split(r'(?=<div id="figure-\d+")', proc.stdout)
    drawn = {re.match(r'<div id="(figure-\d+)"', part).group(1) for part in rendered[1:]
             if 'class="main-svg"' in part and re.search(r'class="(trace|point|bars|scatterlayer)', part)}
    assert drawn == set(figures)
