"""The live feeder: ccxt websockets -> 1-second bars -> stores and Redis, losing nothing."""
