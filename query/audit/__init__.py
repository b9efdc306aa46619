"""The auditor's reads: why-reports, search, stored-record checks, offline report checks and
the log follower.
"""
