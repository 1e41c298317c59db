"""``make bench``: the fast metric path against stock MLflow, same machine, same run.

``python -m benchmarks`` starts a stock ``mlflow server`` and ``synmlops serve`` on temporary
stores (a SQLite folder, then throwaway PostgreSQL databases), logs one federated cycle into
each — stock ``log_batch`` with 1,000 points per request into the stock server, the
``FederatedTracker`` into ``synmlops serve`` — reads every series of the run back both ways,
does the same for a second run of a few long series (5,000 steps each, so stock MLflow's
per-call cost is spread thin), writes a cycle logged a few keys per call both ways (10
participants × 1,250 rounds × 8 keys) and, on SQLite, the same points straight into the
``metrics`` table with ``sqlite3`` (the raw insert ceiling), runs a concurrent scenario
(several federated cycles at once, as the cluster tier does), and prints one table of
points/s and ratios, also written to
``benchmarks/results.md``. A last scenario opens the Command Station's run page of a run of
50 participants × 500 rounds in headless Chromium and times it to every chart drawn
(``benchmarks/page_bench.py``; ``python -m benchmarks --only page`` runs it alone).

Benchmarks measure speed; the tests check correctness. Nothing here asserts a time.
"""
