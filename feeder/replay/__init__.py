"""Loopback exchanges: recorded sessions replayed in each venue's real protocol,
and the paper exchange."""
