"""SqueezeFlow feeder: trades to 1-second bars, the stores, and the read API the strategy uses."""

__version__ = "0.1.0"
