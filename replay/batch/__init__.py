"""Batch replay: shadow evaluation over many decisions, background jobs, and their reports."""
