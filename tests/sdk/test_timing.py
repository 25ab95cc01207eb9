"""When tokens are refreshed and how long reconnect attempts wait: pure functions with explicit clocks."""

from __future__ import annotations

import base64
import json

import pytest
from convoscope_sdk.auth import REFRESH_BEFORE_EXPIRY_S, jwt_expiry, refresh_time
from convoscope_sdk.backoff import Backoff


def _jwt(claims: dict[str, object]) -> str:
    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{segment({'alg': 'HS256'})}.{segment(claims)}.signature"


def test_day_long_token_is_refreshed_five_minutes_before_expiry() -> None:
    assert refresh_time(obtained_at=1_000, expires_at=1_000 + 86_400) == 1_000 + 86_400 - REFRESH_BEFORE_EXPIRY_S


def test_short_lived_token_is_refreshed_halfway() -> None:
    # A 2-minute token would otherwise be "due" before it was even received.
    assert refresh_time(obtained_at=1_000, expires_at=1_120) == 1_060


def test_expired_on_arrival_is_due_at_once() -> None:
    assert refresh_time(obtained_at=1_000, expires_at=900) <= 1_000


def test_jwt_expiry_reads_exp_claim() -> None:
    assert jwt_expiry(_jwt({"sub": "app", "exp": 1_900_000_000})) == 1_900_000_000


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", _jwt({"sub": "app"}), _jwt({"exp": "soon"}),
                                   _jwt({"exp": True})])
def test_jwt_expiry_is_none_when_unknown(token: str) -> None:
    assert jwt_expiry(token) is None


def test_backoff_grows_exponentially_then_caps() -> None:
    backoff = Backoff(initial_s=0.25, factor=2, max_s=5, jitter=0)
    assert [backoff.delay_s(n) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay_s(10_000) == 5.0  # no overflow on very long outages


def test_backoff_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(initial_s=1, factor=2, max_s=8, jitter=0.2)
    assert backoff.delay_s(2, uniform=lambda low, high: low) == pytest.approx(3.2)
    assert backoff.delay_s(2, uniform=lambda low, high: high) == pytest.approx(4.8)
    assert all(0.8 <= backoff.delay_s(0) <= 1.2 for _ in range(200))


def test_backoff_gives_up_when_the_outage_would_outlast_its_budget() -> None:
    backoff = Backoff(give_up_after_s=60)
    assert backoff.should_retry(outage_s=50, next_delay_s=5)
    assert backoff.should_retry(outage_s=55, next_delay_s=5)
    assert not backoff.should_retry(outage_s=56, next_delay_s=5)


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"factor": 0.5}, {"max_s": 0.1, "initial_s": 1}, {"jitter": 1}])
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
