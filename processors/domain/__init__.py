"""The pure domain: the event contract, validation, state transitions, views (no I/O)."""
