"""Fixtures shared by the local-stack journeys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.stack import LocalStack
from tests.support.journeys import Emulator


@pytest.fixture()
def emulator(stack: LocalStack) -> Iterator[Emulator]:
    """The provider emulator, with no script, faults or counts left over from another test."""
    emulator = Emulator(stack)
    emulator.reset()
    yield emulator
    emulator.reset()
