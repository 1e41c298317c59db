"""Tuners feeding Synergos studies through their own callback interfaces.

- ``synergos_mlops.integrations.optuna.SynergosCallback``: ``study.optimize(objective,
  callbacks=[SynergosCallback(...)])`` logs every finished Optuna trial as a trial of a
  Synergos study (see docs/studies.md).
- ``synergos_mlops.integrations.ray_tune.SynergosLoggerCallback``: ``tune.RunConfig(callbacks=
  [SynergosLoggerCallback(...)])`` logs every Ray Tune trial, its results round by round, as a
  trial of a Synergos study (see docs/studies.md).

Federation frameworks logging through their own extension points (see docs/frameworks.md):

- ``synergos_mlops.integrations.flower.SynergosStrategy`` wraps a Flower strategy in the
  ServerApp and logs the Flower run as a federated run (extra ``[flower]``).
- ``synergos_mlops.integrations.nvflare.SynergosReceiver`` is an NVIDIA FLARE analytics
  receiver on the server that logs a job as a federated run (extra ``[nvflare]``).
- ``synergos_mlops.integrations.models`` keeps their final global model as a logged and
  registered MLflow model of the run.

Each module imports its framework on use of the module; none is a dependency of this package.
"""
