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
