"""Replay: model providers, the replay engine, diffs, batch and shadow runs."""
