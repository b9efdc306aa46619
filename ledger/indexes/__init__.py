"""Derived indexes, filled at append time and rebuilt from the log: decisions, replays,
delegations.
"""
