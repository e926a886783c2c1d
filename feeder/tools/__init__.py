"""The command line and its tools: status, quick start,
the offline FreqTrade launcher, synthetic data, rehearse."""
