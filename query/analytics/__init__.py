"""Analytics over an export: DuckDB views, the canned reports and their charts."""
