"""Packaged data files (cost model parameters with their sources)."""
