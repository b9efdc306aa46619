"""The replay engine: a recorded run rebuilt, re-run under a plan, and diffed against the
record.
"""
