"""task=plan: the model's step written out, without a population or a run."""
from __future__ import annotations

import json

import pytest

from lpm_graph.cli import metric_of
from lpm_graph.errors import ConfigError
from lpm_graph.tasks.plan import plan
from tests.conftest import compose_config


def test_plan_prints_and_writes_the_step(tmp_path, capsys):
    cfg = compose_config(["task=plan", "model=seird", "population.num_people=0",
                          "model.environment=[{_target_: lpm_graph.models.epidemic.VenueClosure, venue_type: school, "
                          "start: 5, end: 20}]"])
    result = plan(cfg, tmp_path)  # an impossible population is never built
    text = capsys.readouterr().out
    lines = text.splitlines()
    order = [line.split()[1] for line in lines if line[:3].strip().rstrip(".").isdigit()]
    assert order == ["close_school", "infectiousness", "transmission", "seir"]
    assert "  1. close_school [environment] VenueClosure" in lines
    assert "  4. seir [update] SEIR" in lines
    assert any("writes  person.force_of_infection (sum)" in line for line in lines)
    assert any(line.strip() == "owns    person.S, person.E, person.I, person.R, person.D" for line in lines)
    assert "  seir.fatality = [" in text and "  close_school.factor = 0" in text
    assert "  new_infections: sum of person.new_infections by age" in text
    assert "  deaths: D_T (people)" in text
    assert (tmp_path / "plan.txt").read_text() == text
    rows = json.loads((tmp_path / "plan.json").read_text())
    assert [r["name"] for r in rows] == order and rows[0]["role"] == "environment"
    assert rows[3]["reads"][-2:] == ["person.force_of_infection?", "person.susceptibility_factor?"]
    assert result == {"processes": 4, "parameters": len(rows[0]["params"]) + sum(len(r["params"]) for r in rows[1:]),
                      "observables": 7, "outcomes": 5}
    assert metric_of("plan", result, None) == ("processes", 4.0)
    assert metric_of("plan", result, "outcomes") == ("outcomes", 5.0)


def test_plan_refuses_a_miswired_model(tmp_path):
    cfg = compose_config(["task=plan", "+model.processes.transmission.source=person.emission"])
    with pytest.raises(ConfigError, match="process 'transmission' reads person.emission, which no process before it "
                                          "writes or owns"):
        plan(cfg, tmp_path)
    assert not (tmp_path / "plan.txt").exists()
