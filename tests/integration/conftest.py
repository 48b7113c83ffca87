"""Fixtures shared by the local-stack journeys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import LocalStack
from tests.support.events import BusTap, schema_violations
from tests.support.journeys import Emulator


@pytest.fixture()
def emulator(stack: LocalStack) -> Iterator[Emulator]:
    """The provider emulator, with no script, faults or counts left over from another test."""
    emulator = Emulator(stack)
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture(scope="package", autouse=True)
def bus(stack: LocalStack) -> Iterator[BusTap]:
    """Every event the integration tests make, from the bus as an app's rule gets it; once
    they are done each one is checked against its type's JSON Schema. (Package scope: the
    unit tests after them use moto in-process, whose reset wipes the stack's state too.)"""
    tap = BusTap(stack)
    yield tap
    stack.wait_for_events()
    tap.drain()
    broken = {
        envelope["detail"].get("event_id"): schema_violations(envelope["detail"])
        for envelope in tap.received
        if schema_violations(envelope["detail"])
    }
    assert not broken, f"events that break their schema: {broken}"
