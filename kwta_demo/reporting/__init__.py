"""Reporting: the published figures, the reproduction tables and claims, model cards."""
