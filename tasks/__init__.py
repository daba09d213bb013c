"""Registered task modules: every module in this package is imported by workers and beats."""
