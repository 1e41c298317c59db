"""The Synergos routes, one module per resource, each with a FastAPI ``router`` that
``server.app`` mounts (``ROUTER_MODULES``) ahead of MLflow's own routes. What they share
(prefix, path parameters, the JSON error shape) is in :mod:`synergos_mlops.server.http`; what
they show is read through :mod:`synergos_mlops.views`."""
