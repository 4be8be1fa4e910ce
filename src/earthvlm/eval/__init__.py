"""Evaluation: diagnostics of the scale mechanism (more benchmarks and metrics to come).

``eval`` sits beside ``train``: it may import the model parts and the data, and nothing
below imports it.
"""
