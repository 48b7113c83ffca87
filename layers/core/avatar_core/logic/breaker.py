"""A circuit breaker per provider account: exhaustion stops new paid work at the door.

When a provider says its account is exhausted (Picsart 402: out of credits; its 429 with a
``QuotaViolation`` fault: the quota is used up), nothing we retry can help: the account needs
a person. So the submission that heard it fails at once with that reason, the operator
metric ``ProviderAccountExhausted`` (dimension ``provider``) fires its alarm, and the breaker
opens: an item ``BREAKER#<provider>`` in the table.

While it is open the API's start routes for that provider answer **503** with the reason and
a ``Retry-After`` (nothing is started or reserved). Once ``breaker_cool_off_seconds`` have
passed, **one** submission is let through as the probe (half-open): a conditional write
claims the probe for ``breaker_probe_seconds``, so concurrent requests cannot all probe. A
paid submission that the provider accepts closes the breaker (deletes the item); a probe that
is told "exhausted" again opens it for another cool-off. A probe that never reaches the
provider (refused by a quota of ours, say) just lets its claim expire. Not a loop: nothing
retries on its own; the next client request after the cool-off is the probe.

Which routes answer to which provider: trainings, generations and instant avatars are
Picsart's; face avatars are Qolaba's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from avatar_core.errors import ProviderError, ProviderPaused
from avatar_core.ids import iso, now
from avatar_core.observability import count_per_provider, logger
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository

METRIC = "ProviderAccountExhausted"


def account_reason(provider: str, error: ProviderError) -> str:
    """The operator's sentence: "the Picsart account is out of credits: ..."."""
    problem = getattr(type(error), "account_problem", "needs attention from the operator")
    return f"the {provider.title()} account {problem}"


class ProviderBreaker:
    def __init__(self, repo: AvatarRepository, settings: Settings) -> None:
        self._repo = repo
        self._settings = settings

    def admit(self, provider: str) -> None:
        """At a start route, before anything is reserved: pass, pass as the probe, or
        raise :class:`ProviderPaused` (503)."""
        item = self._repo.get_breaker(provider)
        if item is None:
            return
        moment = now()
        at = iso(moment)
        if str(item.get("probe_after", "")) <= at and self._repo.claim_breaker_probe(
            provider, at, iso(moment + timedelta(seconds=self._settings.breaker_probe_seconds))
        ):
            logger.warning(
                "provider breaker half-open: one submission goes as the probe",
                extra={"provider": provider},
            )
            return
        probe_after = str(item.get("probe_after", at))
        wait = max(
            self._settings.breaker_cool_off_seconds // 10,
            _seconds_until(probe_after, moment),
        )
        reason = item.get("reason") or f"the {provider.title()} account needs the operator"
        raise ProviderPaused(
            f"new {provider.title()} work is paused: {reason}."
            " The operator has been alerted; nothing was started or charged, so try again later",
            provider=provider,
            retry_after_seconds=wait,
        )

    def trip(self, provider: str, error: ProviderError) -> str:
        """The provider said the account is exhausted: open the breaker, alert, and return
        the reason the job fails with."""
        reason = account_reason(provider, error)
        moment = now()
        self._repo.open_breaker(
            provider,
            reason,
            iso(moment),
            iso(moment + timedelta(seconds=self._settings.breaker_cool_off_seconds)),
        )
        count_per_provider(METRIC, provider)
        logger.error(
            "provider account exhausted: new paid work for it is paused",
            extra={"provider": provider, "reason": reason, "provider_said": error.message},
        )
        return reason

    def accepted(self, provider: str) -> None:
        """The provider took paid work: if the breaker was open (this was the probe, or
        work queued before it opened), the account works again, so close it."""
        if self._repo.get_breaker(provider) is not None and self._repo.close_breaker(provider):
            logger.warning(
                "provider breaker closed: the account takes work again",
                extra={"provider": provider},
            )


def _seconds_until(stamp: str, moment: datetime) -> int:
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 1
    return max(1, int((then - moment).total_seconds()) + 1)
