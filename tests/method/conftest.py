from __future__ import annotations

import pytest

from feeder.tools.synthetic import Scenario
from tests.scenario import Built, build


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("planted"), Scenario.planted())


@pytest.fixture(scope="session")
def planted_mirrored(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("mirrored"), Scenario.planted(mirror=True))


@pytest.fixture(scope="session")
def neutral(tmp_path_factory) -> Built:
    return build(tmp_path_factory.mktemp("neutral"), Scenario(days=10, seed=11))


#: A recorder outage in the planted scenario with open interest: 2 h without a snapshot, from
#: 30 minutes into the third episode's divergence (day 5, 19:30 UTC).
OI_OUTAGE = (5 * 86_400 + 19 * 3600 + 1800, 5 * 86_400 + 21 * 3600 + 1800)


@pytest.fixture(scope="session")
def planted_oi(tmp_path_factory) -> Built:
    """The planted scenario with open interest (metrics archives, one outage) and liquidations."""
    sc = Scenario.planted(open_interest=True, liquidations=True, oi_outages=[OI_OUTAGE])
    return build(tmp_path_factory.mktemp("planted_oi"), sc)
