"""Background services ``synmlops serve`` runs beside the web workers: the GELF log input and
the log retention (``log_service``, decoding in ``gelf``). Each is a supervised thread whose
status ``/health`` reads; the file-store mirror is in :mod:`synergos_mlops.legacy`."""
