"""Commands of emcs.dlss (being written)."""
