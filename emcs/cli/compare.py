"""Commands of emcs.compare (being written)."""
