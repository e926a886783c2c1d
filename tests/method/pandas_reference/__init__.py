"""The method's first, all-pandas formulation (squeezeflow as of commit 87d0c16), kept verbatim as
the reference the faster implementation in ``user_data/strategies/squeezeflow`` must equal
exactly (``tests/method/test_fast_equals_reference.py``). Not used by the strategy."""
