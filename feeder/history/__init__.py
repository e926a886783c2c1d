"""Trade sources: historical archives and live exchange feeds."""
