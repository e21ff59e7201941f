"""What a partitioned run does not support is refused before any work, naming the process."""
from __future__ import annotations

import re

import pytest
import torch

from lpm_graph.distributed.halo import check_partitionable
from lpm_graph.errors import ConfigError
from tests.distributed import workers


@pytest.mark.parametrize("overrides", [[], ["model=opinion"], ["model=opinion_stubborn"]])
def test_the_default_epidemic_and_the_degroot_opinion_models_are_partitionable(overrides):
    model, _, _ = workers.build([*overrides, "population.num_people=100"])
    check_partitionable(model)


@pytest.mark.parametrize("overrides, named", [
    (["model=opinion_hk"], "'confidence' (BoundedConfidence), 'clusters' (OpinionClusters)"),
    (["model=opinion_deffuant"], "'deffuant' (DeffuantPairs)"),
    (["model=economy"], "'price' (PriceLevel)"),
    (["behavior=rules"], "(RuleBehavior)"),
])
def test_a_model_with_a_process_not_known_to_be_correct_on_a_part_is_refused(overrides, named):
    model, _, _ = workers.build([*overrides, "population.num_people=100"])
    with pytest.raises(ConfigError, match=r"a partitioned run .* not .*" + re.escape(named)):
        check_partitionable(model)


def test_seeding_exactly_k_people_is_refused_on_a_part(tmp_path):
    import torch.distributed as dist

    from lpm_graph.distributed.runner import prepare_part

    model, data, _ = workers.build(["population.num_people=200", "model.params.seir.initial_infected=3"])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        graph, _ = prepare_part(model, data, method="contiguous")
        with pytest.raises(ConfigError, match="'seir'.*initial_infected = 3 chooses exactly k people"):
            model(graph, steps=2)
    finally:
        dist.destroy_process_group()
    assert torch.is_grad_enabled()
