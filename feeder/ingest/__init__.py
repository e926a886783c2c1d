"""Ingest: normalised trades, exact 1-second bars and rollups,
and the chunked pipeline into a store."""
