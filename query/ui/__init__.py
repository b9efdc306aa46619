"""The auditor pages: server-rendered HTML under /ui."""
