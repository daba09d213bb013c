"""Metrics, the health port of each process, alert rules and their delivery."""
