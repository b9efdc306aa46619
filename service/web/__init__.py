"""The HTTP service: the application factory, authentication, limits, operations routes and
`prov serve`.
"""
