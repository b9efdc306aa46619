"""Keys and credentials: Ed25519 primitives, the service-key registry, the ledger's replay key,
API keys and page sessions.
"""
