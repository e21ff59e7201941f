"""Calibration checkpoints: verified before use, hold only what is fitted, and say why one cannot be resumed."""
from __future__ import annotations

import io
import os
import re
import shutil
import struct
import zipfile

import pandas as pd
import pytest
import torch

from lpm_graph.data import generate_population, save_population
from lpm_graph.errors import ConfigError
from lpm_graph.tasks import checkpoint
from lpm_graph.tasks.calibrate import calibrate
from tests.conftest import compose_config
from tests.tasks.test_calibrate import TRUTH, base_overrides, observed, stochastic  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def made(observed, tmp_path_factory):  # noqa: F811
    """A checkpoint after 3 of 6 iterations, and the loss.csv of the uninterrupted 6."""
    root = tmp_path_factory.mktemp("made")
    calibrate(stochastic(observed, ["task.iterations=3"]), root / "first")
    calibrate(stochastic(observed, ["task.iterations=6"]), root / "full")
    return root / "first" / "checkpoint.pt", (root / "full" / "loss.csv").read_text()


def resume(obs, ckpt, out, extra=()):
    return calibrate(stochastic(obs, ["task.iterations=6", f"task.resume={ckpt}", *extra]), out)


def tensor_storages(raw: bytes):
    """(offset, size) in ``raw`` of the bytes of every tensor of the torch.save archive inside it."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:  # offsets are corrected for bytes before the archive
        for info in z.infolist():
            if "/data/" in info.filename:
                h = info.header_offset
                name, extra = struct.unpack("<HH", raw[h + 26:h + 30])
                yield h + 30 + name + extra, info.file_size


def test_a_checkpoint_whose_tensor_bytes_were_overwritten_is_refused(observed, made, tmp_path):  # noqa: F811
    ckpt, _ = made
    raw = bytearray(ckpt.read_bytes())
    flipped = 0
    for offset, size in tensor_storages(bytes(raw)):
        if size == 4:  # the float32 scalars: fitted values and their optimiser moments
            raw[offset] ^= 1  # the lowest mantissa bit: a finite value one ulp away
            flipped += 1
    assert flipped >= 3
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match=rf"{re.escape(repr(str(tampered)))} was modified or corrupted.*"
                                          r"SHA-256.*rerun without task.resume, or resume from another checkpoint"):
        resume(observed, tampered, tmp_path / "out")
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
    # the untouched checkpoint resumes to the uninterrupted run's result
    resume(observed, ckpt, tmp_path / "ok")
    assert (tmp_path / "ok" / "loss.csv").read_text() == made[1]


def _earlier_format(path):
    torch.save({"format": "lpm_graph.calibration_checkpoint/1", "iteration": 3, "model": {}, "net": None,
                "optimizer": {}, "history": [1.0, 1.0, 1.0], "config_key": "0" * 16, "data_digest": ""}, path)


UNUSABLE = {  # name -> (make the file at path from a valid checkpoint, the reason expected)
    "missing": (lambda path, good: None, r"does not exist; give the path of a checkpoint.pt"),
    "folder": (lambda path, good: (path.mkdir(), shutil.copy(good, path / "checkpoint.pt")),
               r"is a folder, not a file.*did you mean '.*checkpoint.pt'\?"),
    "empty": (lambda path, good: path.write_bytes(b""), r"is empty \(0 bytes\)"),
    "truncated": (lambda path, good: path.write_bytes(good.read_bytes()[:good.stat().st_size // 2]),
                  r"is truncated: it holds \d+ of its \d+ payload bytes"),
    "csv": (lambda path, good: path.write_text("step,cases_0-10\n1,0.5\n"),
            r"is a text file \(it starts 'step,cases_0-10'\), not a calibration checkpoint"),
    "list": (lambda path, good: torch.save([1.0, 2.0], path), r"is a PyTorch file but not a calibration checkpoint"),
    "population": (lambda path, good: save_population(generate_population(200, seed=1), path),
                   r"is a PyTorch file but not a calibration checkpoint \(a saved population"),
    "earlier format": (lambda path, good: _earlier_format(path),
                       r"was written by an earlier version of lpm_graph, without the content digest"),
}


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_an_unusable_checkpoint_file_is_refused_with_its_reason(observed, made, tmp_path, kind):  # noqa: F811
    make, reason = UNUSABLE[kind]
    path = tmp_path / "given.pt"
    make(path, made[0])
    with pytest.raises(ConfigError, match=rf"^task.resume: checkpoint {re.escape(repr(str(path)))} {reason}") as e:
        resume(observed, path, tmp_path / "out")
    assert "Errno" not in str(e.value) and "()" not in str(e.value)
    if kind not in ("missing", "folder", "csv", "list", "population"):  # the file is damaged: the fix is named
        assert str(e.value).endswith("rerun without task.resume, or resume from another checkpoint")


def test_a_resume_with_a_changed_config_names_the_keys_that_changed(observed, made, tmp_path):  # noqa: F811
    ckpt, _ = made
    with pytest.raises(ConfigError, match=r"different config \(model.params.transmission.beta_household: "
                                          r"[0-9.]+ -> 0.9; task.replicates: 2 -> 3\); resume only with the same"):
        resume(observed, ckpt, tmp_path / "x", ["model.params.transmission.beta_household=0.9", "task.replicates=3"])
    # many changes: the first ten, sorted, then how many more
    many = [f"model.params.transmission.{k}=0.11" for k in ("beta_household", "beta_school", "beta_workplace")]
    many += ["model.params.seir.exposed_period=2.5", "model.params.seir.infectious_period=4.5",
             "model.params.infectiousness.relative=0.9", "task.replicates=3", "task.loss=poisson",
             "task.dispersion=5.0", "seed=9", "task.optimizer.lr=0.01", "observations.series.cases_0-10.delay=2"]
    with pytest.raises(ConfigError) as e:
        resume(observed, ckpt, tmp_path / "y", many)
    listed = re.search(r"different config \((.*)\); resume only", str(e.value)).group(1).split("; ")
    assert len(listed) == 11 and re.fullmatch(r"and \d+ more", listed[-1])
    keys = [entry.split(":")[0] for entry in listed[:-1]]
    assert keys == sorted(keys) and keys[0] == "model.params.infectiousness.relative"
    # the keys a resumed run may change are no change
    resume(observed, ckpt, tmp_path / "ok", ["task.checkpoint_every=2", "threads=1"])


def test_resuming_with_fewer_iterations_than_the_checkpoint_is_an_error(observed, made, tmp_path):  # noqa: F811
    ckpt, _ = made
    with pytest.raises(ConfigError, match=r"task.iterations=2 is below the iteration of checkpoint .* \(3\): "
                                          r"set task.iterations >= 3"):
        calibrate(stochastic(observed, ["task.iterations=2", f"task.resume={ckpt}"]), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no outputs, no checkpoint labelled with the wrong iteration
    # as many iterations as the checkpoint: the outputs of its iterations, no further step
    calibrate(stochastic(observed, ["task.iterations=3", f"task.resume={ckpt}"]), tmp_path / "same")
    assert len(pd.read_csv(tmp_path / "same" / "loss.csv")) == 3


RAW = {"params._params." + k.replace(".", "__") for k in TRUTH}  # storage names of the learnable parameters


def test_a_checkpoint_restores_only_what_is_fitted(observed, made, tmp_path):  # noqa: F811
    ckpt, _ = made
    payload = checkpoint.read(ckpt)
    assert set(payload["learnable"]) == RAW and payload["net"] is None  # no fixed parameter
    assert set(payload["optimizer"]["state"]) == {0, 1, 2} and payload["iteration"] == 3
    umask = os.umask(0)
    os.umask(umask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in ckpt.parent.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    # a checkpoint carrying a fixed parameter cannot set it: the config does
    payload["learnable"]["params.fixed_transmission__beta_household"] = torch.tensor(0.9)
    checkpoint.write(tmp_path / "fixed.pt", payload)
    with pytest.raises(ConfigError, match=r"holds model.learnable values .*'params.fixed_transmission__beta_household'"
                                          r".* but this run fits"):
        resume(observed, tmp_path / "fixed.pt", tmp_path / "out")

    # a calibration network: its weights are saved, not its bounds (buffers from the config); resume is exact
    features = tmp_path / "features.csv"
    pd.DataFrame({"mobility": [1, 0.9, 0.8, 0.8, 0.7, 0.7, 0.6, 0.6]}).to_csv(features, index=False)
    over = ["task.checkpoint_every=0", "model.learnable=[observation.reporting_fraction]",
            "model.params.transmission.beta_community=[0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3]",
            "+model.time_varying.transmission.beta_community=7",
            f"task.calibration_net={{features: {features}, targets: {{transmission.beta_community: [0.0, 2.0]}}}}"]
    calibrate(compose_config(base_overrides(observed, [*over, "task.iterations=2"])), tmp_path / "net2")
    net = checkpoint.read(tmp_path / "net2" / "checkpoint.pt")["net"]
    assert net and not {"lo", "hi"} & set(net) and all(n.endswith(("weight", "bias")) for n in net)
    calibrate(compose_config(base_overrides(observed, [*over, "task.iterations=4"])), tmp_path / "net4")
    calibrate(compose_config(base_overrides(observed, [*over, "task.iterations=4",
                                                       f"task.resume={tmp_path / 'net2' / 'checkpoint.pt'}"])),
              tmp_path / "resumed")
    assert (tmp_path / "resumed" / "loss.csv").read_text() == (tmp_path / "net4" / "loss.csv").read_text()


def test_config_changes_are_listed_by_dotted_key():
    old = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "gone": 1}
    new = {"a": {"b": 2, "c": [1, 2]}, "d": "y", "new": {"k": True}}
    assert checkpoint.config_changes(old, new) == ['a.b: 1 -> 2', 'd: "x" -> "y"', "gone: 1 -> (absent)",
                                                   "new.k: (absent) -> true"]
    many = checkpoint.config_changes({f"k{i:02}": i for i in range(13)}, {f"k{i:02}": i + 1 for i in range(13)})
    assert len(many) == 11 and many[0] == "k00: 0 -> 1" and many[-1] == "and 3 more"


def test_process_weights_are_named_by_process_and_read_from_a_run_folder(tmp_path):
    import json

    w = {"behavior.1.net.layers.0.weight": torch.ones(2, 3), "behavior.1.net.layers.0.bias": torch.zeros(2),
         "processes.0.lin.weight": torch.full((1, 1), 2.0), "params._params.seir__beta": torch.tensor(0.3)}
    config = {"model": {"behavior": {"a_prevalence": {"x": 1}, "net_b": {"inputs": ["person.I"]}},
                        "processes": {"seir": {"k": 2}}}}
    checkpoint.write(tmp_path / "checkpoint.pt", {
        "learnable": w, "config": json.dumps(config, sort_keys=True),
        "processes": {"environment": [], "behavior": ["a_prevalence", "net_b"], "processes": ["seir"]}})
    got = checkpoint.process_weights(tmp_path)  # the folder of the run
    assert sorted(got) == ["net_b", "seir"]     # the parameter set is not a process's weights
    assert sorted(got["net_b"]["weights"]) == ["net.layers.0.bias", "net.layers.0.weight"]
    assert torch.equal(got["net_b"]["weights"]["net.layers.0.weight"], torch.ones(2, 3))
    assert got["net_b"]["config"] == {"inputs": ["person.I"]} and got["seir"]["config"] == {"k": 2}
    # a checkpoint written before the names were saved: by position, settings unknown
    checkpoint.write(tmp_path / "old.pt", {"learnable": w, "config": json.dumps(config)})
    old = checkpoint.process_weights(tmp_path / "old.pt")
    assert sorted(old) == ["behavior[1]", "processes[0]"] and old["behavior[1]"]["config"] is None
    checkpoint.write(tmp_path / "none.pt", {"learnable": {"params._params.seir__beta": torch.tensor(0.3)},
                                            "config": json.dumps(config)})
    with pytest.raises(ConfigError, match=r"weights: checkpoint .*none\.pt' holds no trained weights of a process "
                                          r"\(its run fitted only \['params\._params\.seir__beta'\]\)"):
        checkpoint.process_weights(tmp_path / "none.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        checkpoint.process_weights(tmp_path / "missing", field="weights")
