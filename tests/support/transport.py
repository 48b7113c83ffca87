"""Transport failures every provider client meets, and what each must become.

The rule lives in the shared ``ProviderHttp``; each provider's contract tests drive it
through that provider's own calls.
"""

from __future__ import annotations

import pytest
import requests

from avatar_core.errors import ProviderOutcomeUnknown, ProviderUnavailable

transport_failures = pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=20.0)"),
        requests.exceptions.ConnectTimeout("Connection to host timed out. (connect timeout=5.0)"),
        requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"),
    ],
    ids=["read-timeout", "connect-timeout", "connection-error"],
)


def expected_failure(
    failure: Exception, *, paid_work: bool
) -> type[ProviderOutcomeUnknown] | type[ProviderUnavailable]:
    """Retryable, unless paid work may have started: only a failed connect proves it did not."""
    ambiguous = not isinstance(failure, requests.exceptions.ConnectTimeout)
    return ProviderOutcomeUnknown if paid_work and ambiguous else ProviderUnavailable
