"""The demo fails when it proves nothing: no readings, or an outage the agent did not live through."""

from __future__ import annotations

import pytest

from hil.demo import proves_something
from kernel.errors import GatewayError


def test_a_demo_that_produced_nothing_fails() -> None:
    with pytest.raises(GatewayError, match="no reading"):
        proves_something(0, agent_ran_through_outage=True)


def test_a_demo_whose_agent_missed_the_outage_fails() -> None:
    with pytest.raises(GatewayError, match="outage"):
        proves_something(120, agent_ran_through_outage=False)


def test_a_demo_with_readings_through_the_outage_passes() -> None:
    proves_something(120, agent_ran_through_outage=True)
