"""Database writes shared by the server's Synergos routes and the tracker's folder mode.

This package sits between the two: the server's routers (``synergos_mlops.server.routes.bulk``) and
the tracking library's folder transport both call it, and it imports neither of them.

- :mod:`synergos_mlops.storage.batch`: the columnar metric batch and its wire form (light,
  pure Python; the tracker imports it at log time).
- :mod:`synergos_mlops.storage.metrics`: the idempotent bulk write into MLflow's ``metrics``
  and ``latest_metrics`` tables (SQLAlchemy, MLflow's table models; SQLite and PostgreSQL).
- :mod:`synergos_mlops.storage.runs`: get-or-create of a federation's experiment, parent run
  and participant runs, serialized in the database.

Only ``batch`` is imported here, so ``import synergos_mlops.storage`` stays cheap.
"""

from __future__ import annotations

from synergos_mlops.storage.batch import MetricBatch, decode_batch, encode_batch

__all__ = ["MetricBatch", "decode_batch", "encode_batch"]
