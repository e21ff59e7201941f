"""Shared fixtures: small populations and the default model built from the shipped config."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import lpm_graph.config  # noqa: F401  (registers structured schemas)
from lpm_graph.data import generate_population

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(overrides=()):
    """Compose the shipped config (conf/) with overrides, as the CLI does."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def build_model(overrides=(), **kwargs):
    """The model of the shipped config, with config overrides and constructor keyword overrides."""
    cfg = compose_config(overrides)
    return instantiate(cfg.model, _convert_="all", **kwargs)


@pytest.fixture(scope="session")
def small_population():
    return generate_population(3000, seed=11)


@pytest.fixture(scope="session")
def tiny_population():
    return generate_population(400, seed=5)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(1)  # two OpenMP threads collapse when another process holds a core
    yield
