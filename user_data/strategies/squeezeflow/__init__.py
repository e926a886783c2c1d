"""The SqueezeFlow method: spot-vs-perp CVD squeezes, made causal (docs/method.md).

Pure functions over pandas/numpy: no FreqTrade, Redis or InfluxDB imports. Every function
returns data on the index it received, uses only rolling windows that end at the current
candle, and never uses a CVD level (only windowed deltas), so signals at a candle depend
neither on later candles nor on where the loaded range starts.
"""

import sys
from pathlib import Path

# FreqTrade puts the strategies folder on sys.path only while it loads a strategy file, so this
# package beside the strategy would be importable in that moment only. Processes started later
# from this one copy its sys.path (hyperopt's joblib/loky workers, multiprocessing spawn) and must
# import this very package from this very folder: keep the folder on sys.path, after every
# existing entry so it shadows nothing.
_FOLDER = str(Path(__file__).resolve().parent.parent)
if _FOLDER not in sys.path[1:]:
    sys.path.append(_FOLDER)

from squeezeflow.params import MethodParams  # noqa: E402
from squeezeflow.signals import FEATURE_COLUMNS, SIGNAL_COLUMNS, compute  # noqa: E402

__all__ = ["FEATURE_COLUMNS", "SIGNAL_COLUMNS", "MethodParams", "compute"]
