"""Server additions mounted on MLflow's own tracking server app.

``app.create_app`` is the ``mlflow.app`` entry-point factory (``mlflow server --app-name
synergos``); ``serve`` starts MLflow's server with it. The server never imports the demo,
and the tracking library never imports the server.
"""
