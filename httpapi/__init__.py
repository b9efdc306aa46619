"""The HTTP layer the write and read paths share: RFC 9457 problem documents mapped from the
one exception hierarchy.
"""
