"""The read model: what the server's routes and the CLI's ``export`` and ``lineage`` show.

Federated runs resolved from MLflow's tables (:mod:`.federated_runs`), a run's bundle
(:mod:`.bundle`, :mod:`.run_data`, :mod:`.system`, :mod:`.logs`), the catalogue and lineage
views (:mod:`.catalogue`) and studies with their comparisons (:mod:`.studies`). It reads
through :mod:`synergos_mlops.storage` and knows nothing of HTTP: the server maps its errors
onto answers (``server.http.answer``).
"""
