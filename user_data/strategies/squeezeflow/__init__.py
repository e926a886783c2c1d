"""The SqueezeFlow method: spot-vs-perp CVD squeezes, made causal (docs/method.md).

Pure functions over pandas/numpy: no FreqTrade, Redis or InfluxDB imports. Every function
returns data on the index it received, uses only rolling windows that end at the current
candle, and never uses a CVD level (only windowed deltas), so signals at a candle depend
neither on later candles nor on where the loaded range starts.
"""

from squeezeflow.params import MethodParams
from squeezeflow.signals import FEATURE_COLUMNS, SIGNAL_COLUMNS, compute

__all__ = ["FEATURE_COLUMNS", "SIGNAL_COLUMNS", "MethodParams", "compute"]
