"""`emcs train tcs` (being written)."""
