r"""A calibration network: exogenous features to time-varying parameters.

As in GradABM (Chopra et al., AAMAS 2023), instead of fitting each weekly
value of a time-varying parameter freely, a small network maps exogenous
feature series (mobility, temperature, policy indices ...) to the parameter
series, and its weights are trained end to end through the simulator:

.. math::

    \theta_p(k) = lo_p + (hi_p - lo_p)\,\sigma\big(\mathrm{MLP}(z_k)_p\big),
    \qquad k = 1..K

for feature rows :math:`z_k` (one per period of the time-varying
parameters).  The output is passed to
:meth:`lpm_graph.core.Model.forward` as ``overrides``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lpm_graph.errors import ConfigError

__all__ = ["CalibrationNet", "load_features"]


def load_features(path: str | Path, columns: Sequence[str] | None = None) -> Tensor:
    """Feature table (CSV/Parquet, one row per period) as ``[K, F]`` float, standardised per column."""
    import pandas as pd

    from lpm_graph.observation import resolve_data_path

    path = resolve_data_path(path)
    if not path.exists():
        raise ConfigError(f"task.calibration_net.features: file {str(path)!r} does not exist")
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as e:  # pandas/pyarrow raise many types for unreadable files
        raise ConfigError(f"task.calibration_net.features: could not read {str(path)!r}: {e}") from None
    cols = list(columns) if columns else [c for c in df.columns if c not in ("step", "week", "period")]
    missing = [c for c in cols if c not in df.columns]
    if missing or not cols:
        raise ConfigError(f"features file {str(path)!r}: missing columns {missing or 'all'}; has {list(df.columns)}")
    try:
        x = torch.tensor(df[cols].to_numpy(dtype=float), dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"features file {str(path)!r}: columns {cols} must hold numbers ({e})") from None
    if not torch.isfinite(x).all():
        raise ConfigError(f"features file {str(path)!r}: values must be finite numbers (no missing cells)")
    return (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-8)


class CalibrationNet(nn.Module):
    """MLP from feature rows ``[K, F]`` to bounded parameter series ``{name: [K]}``.

    Args:
        num_features (int): ``F``.
        targets (Mapping[str, [lo, hi]]): the parameters produced and their bounds.
        hidden (int): hidden width. (default: 16)
        init (Mapping[str, float], optional): initial value of each target,
            so training starts from the configured parameter values.
        seed (int): seeds the initial weights (from the run's seed in
            ``task=calibrate``), so a run is reproducible; torch's global
            random state is left as it was. (default: 0)
    """

    def __init__(self, num_features: int, targets: Mapping[str, Sequence[float]], hidden: int = 16,
                 init: Mapping[str, float] | None = None, seed: int = 0):
        super().__init__()
        if not targets:
            raise ConfigError("task.calibration_net.targets is empty: name the time-varying parameters to produce")
        self.names = list(targets)
        bounds = []
        for name, b in targets.items():
            lo, hi = float(b[0]), float(b[1])
            if not hi > lo:
                raise ConfigError(f"task.calibration_net.targets.{name} must be [lo, hi] with hi > lo, got {list(b)}")
            bounds.append((lo, hi))
        self.register_buffer("lo", torch.tensor([b[0] for b in bounds]))
        self.register_buffer("hi", torch.tensor([b[1] for b in bounds]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.mlp = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, len(self.names)))
        if init:
            outside = [f"{n} = {float(init[n]):g} outside [{lo:g}, {hi:g}]" for n, (lo, hi) in zip(self.names, bounds)
                       if not lo <= float(init[n]) <= hi]
            if outside:
                raise ConfigError(f"task.calibration_net: the starting value of {'; '.join(outside)} (the network's "
                                  "output range, task.calibration_net.targets); set model.params.<name> inside the "
                                  "range or widen it")
            q = torch.tensor([(float(init[n]) - lo) / (hi - lo) for n, (lo, hi) in zip(self.names, bounds)])
            with torch.no_grad():
                self.mlp[-1].bias.copy_(torch.logit(q.clamp(1e-4, 1 - 1e-4)))
                self.mlp[-1].weight.mul_(0.1)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        z = torch.sigmoid(self.mlp(features.to(self.lo.dtype)))
        values = self.lo + (self.hi - self.lo) * z
        return {name: values[:, i] for i, name in enumerate(self.names)}
