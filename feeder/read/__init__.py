"""The read side: ``load_flow``, candle bucketing and ``FlowSource``:
the only part the strategy imports."""
