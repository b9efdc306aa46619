"""Demo scenarios: deterministic demo decisions, signed demo traffic, the demo model server and
its models.
"""
