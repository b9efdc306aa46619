"""Delegation: UCAN 1.0 tokens, the policy language, chain rules, principals and revocations."""
