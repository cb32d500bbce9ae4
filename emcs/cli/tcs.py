"""Commands of emcs.tcs (being written)."""
