"""Server additions mounted on MLflow's own tracking server app.

``app.create_app`` is the ``mlflow.app`` entry-point factory (``mlflow server --app-name
synergos``); ``serve`` starts uvicorn with it, as that command would. ``http`` holds what the
routes share, ``routes/`` the routes (one module per resource), ``services/`` the background
threads serve supervises, ``auth/`` accounts and visibility; ``serve``, ``guard``,
``database``, ``health`` and ``migrate`` are process control. What the routes show is read
through :mod:`synergos_mlops.views`. The server never imports the tracker, the demo or the
ingester, and the tracking library never imports the server (``tests/test_layers.py``).
"""
