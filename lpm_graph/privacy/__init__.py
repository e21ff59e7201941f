"""Privacy: secure aggregation of private contributions (docs/privacy.md).

- :class:`FixedPoint` (``encoding.py``): real vectors to the ring Z_2^64 and back, with a clipping range, an
  overflow check before any round and the quantisation bound ``n · 2^-frac_bits / 2``.
- :func:`secure_sum` and the protocol's two sides, :class:`SecAggClient` and :class:`SecAggServer`
  (``secagg.py``): Bonawitz et al. (CCS 2017) with SecAgg+ neighbourhoods, signed :class:`Envelope` messages.
- ``shamir.py``: t-of-n Shamir sharing over GF(2^521 - 1).
- ``service.py`` (``AggregatorService``, ``create_app``, ``serve``) and ``client.py`` (``RemoteClient``): the same
  round over HTTP; imported on their own, as they need fastapi/uvicorn and httpx. Both are programs too
  (``python -m lpm_graph.privacy.service`` / ``.client``), with keys in files (``keys.py``).

Needs the ``privacy`` extra (``cryptography``; the network service also ``fastapi``, ``uvicorn``, ``httpx``).
"""
from __future__ import annotations

from lpm_graph.errors import PrivacyConfigError, PrivacyError
from lpm_graph.privacy.encoding import FixedPoint
from lpm_graph.privacy.secagg import (SERVER, Envelope, RoundConfig, SecAggClient, SecAggServer, make_round, prg,
                                      secure_sum)

__all__ = ["FixedPoint", "secure_sum", "SecAggClient", "SecAggServer", "Envelope", "RoundConfig", "make_round", "prg",
           "SERVER", "PrivacyError", "PrivacyConfigError"]
