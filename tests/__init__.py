"""The test suite: real SQLite and PostgreSQL, real keys, the real CLI."""
