"""Tuners feeding Synergos studies through their own callback interfaces.

- ``synergos_mlops.integrations.optuna.SynergosCallback``: ``study.optimize(objective,
  callbacks=[SynergosCallback(...)])`` logs every finished Optuna trial as a trial of a
  Synergos study (see docs/studies.md).
- ``synergos_mlops.integrations.ray_tune.SynergosLoggerCallback``: ``tune.RunConfig(callbacks=
  [SynergosLoggerCallback(...)])`` logs every Ray Tune trial, its results round by round, as a
  trial of a Synergos study (see docs/studies.md).

Each module imports its tuner on use; none is a dependency of this package.
"""
