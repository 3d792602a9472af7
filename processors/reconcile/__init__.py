"""Reconciliation: recompute every number from a source of truth and repair drift."""
