"""Group commit: concurrent appends sharing one transaction, and its metrics."""
