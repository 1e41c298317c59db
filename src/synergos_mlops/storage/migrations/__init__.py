"""Alembic migrations of the tables Synergos MLOps keeps beside MLflow's (see schema.py)."""
