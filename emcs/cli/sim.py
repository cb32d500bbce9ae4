"""Commands of emcs.sim (being written)."""
