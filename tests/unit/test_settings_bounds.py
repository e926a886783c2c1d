"""Every numeric setting is bounded: an absurd value is refused naming the key, never accepted
to stall the feeder (``grace_s: 1e308`` closed no bar ever)."""

from __future__ import annotations

import pytest

from feeder.settings import ConfigError, settings_from_dict

ABSURD = [
    ({"grace_s": 1e308}, "squeezeflow.grace_s"),
    ({"grace_s": float("inf")}, "squeezeflow.grace_s"),
    ({"staleness_limit_s": 1e308}, "squeezeflow.staleness_limit_s"),
    ({"feeder": {"retain_s": 10**12}}, "squeezeflow.feeder.retain_s"),
    ({"feeder": {"backoff_max_s": 1e308}}, "squeezeflow.feeder.backoff_max_s"),
    ({"feeder": {"oi_interval_s": 1e308}}, "squeezeflow.feeder.oi_interval_s"),
    ({"feeder": {"flush_interval_s": 1e308}}, "squeezeflow.feeder.flush_interval_s"),
    ({"feeder": {"coverage_interval_s": 1e308}}, "squeezeflow.feeder.coverage_interval_s"),
    ({"feeder": {"queue_size": 10**12}}, "squeezeflow.feeder.queue_size"),
    ({"store": {"influx": {"timeout_s": 1e308}}}, "squeezeflow.store.influx.timeout_s"),
    ({"store": {"influx": {"max_retries": 10**9}}}, "squeezeflow.store.influx.max_retries"),
    ({"redis": {"maxlen": 10**15}}, "squeezeflow.redis.maxlen"),
]


@pytest.mark.parametrize(("section", "named"), ABSURD)
def test_absurd_numbers_are_refused_naming_the_key(section, named):
    with pytest.raises(ConfigError) as e:
        settings_from_dict(section, env=False)
    assert named in str(e.value)


def test_the_defaults_are_inside_the_bounds():
    s = settings_from_dict(None, env=False)
    assert s.grace_s == 0.5 and s.feeder.retain_s == 600
