"""Storage: engines and transactions, table definitions, migrations and content-addressed
blobs.
"""
