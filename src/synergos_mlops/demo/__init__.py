"""``synmlops demo``: a real, small federated cycle, logged through the tracking library.

::

    data.py        the digits data set that scikit-learn ships, sharded non-IID
    statistics.py  Synergos' per-class statistics, one-vs-rest
    training.py    softmax regression trained with FedAvg or FedProx (numpy; logs nothing)
"""
