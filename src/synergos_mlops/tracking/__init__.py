"""The orchestrator's logging library (see FederatedTracker)."""
