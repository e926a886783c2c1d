"""``python -m feeder.replay``: the Binance replay server (see :mod:`feeder.replay.cli`)."""

from feeder.replay.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
