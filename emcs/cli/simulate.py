"""Commands of emcs.simulate (being written)."""
