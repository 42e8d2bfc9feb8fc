"""Backends that produce the network results and QKD traces (built-in, OMNeT++/INET, QuISP)."""
