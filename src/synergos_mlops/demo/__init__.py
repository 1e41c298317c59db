"""``synmlops demo``: a real, small federated cycle, logged through the tracking library.

::

    data.py        the digits data set that scikit-learn ships, sharded non-IID
    statistics.py  Synergos' per-class statistics, one-vs-rest
    training.py    softmax regression trained with FedAvg or FedProx (numpy; logs nothing)
    record.py      runs the cycle and logs every round through FederatedTracker
    registry.py    the final global model as an MLflow model, registered
    target.py      the destination: does it hold runs, where to see the result
    command.py     what ``synmlops demo`` prints (progress bar, links)

The server never imports this package.
"""

from __future__ import annotations

from synergos_mlops.demo.record import DemoConfig, DemoResult, run_demo
from synergos_mlops.demo.training import TrainingConfig

__all__ = ["DemoConfig", "DemoResult", "TrainingConfig", "run_demo"]
