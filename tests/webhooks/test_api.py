"""The webhook Management API on SQLite and PostgreSQL: register, list, read, delete, the delivery log, and
the errors a client gets for bad input or another app's webhook."""

from __future__ import annotations

import pytest

from convoscope.auth import create_app
from schemas.topics import TRANSCRIPTS_FINAL
from sinks.webhooks.logic import events_from_record
from sinks.webhooks.outbox import enqueue, webhooks_of
from tests.api.conftest import Api
from tests.store.records import final, speaker

BASE = "/v1/manage/webhooks"

pytestmark = pytest.mark.usefixtures("empty_outbox")


async def test_create_list_get_and_delete(api: Api) -> None:
    created = await api.client.post(BASE, headers=api.auth(), json={
        "url": "https://hooks.example.com/convoscope", "eventTypes": ["message.final", "conversation.completed"]})
    assert created.status_code == 201, created.text
    webhook = created.json()["webhook"]
    assert webhook["url"] == "https://hooks.example.com/convoscope" and webhook["conversationId"] is None
    assert webhook["eventTypes"] == ["message.final", "conversation.completed"]
    assert webhook["secret"].startswith("whsec_") and len(webhook["secret"]) > 40  # generated, shown once

    chosen = await api.client.post(BASE, headers=api.auth(), json={
        "url": "http://127.0.0.1:9000/hook", "eventTypes": ["job.completed"], "conversationId": "1700000000000000001",
        "secret": "my-own-secret-of-24-chars"})
    assert chosen.status_code == 201 and chosen.json()["webhook"]["secret"] == "my-own-secret-of-24-chars"

    listed = (await api.client.get(BASE, headers=api.auth())).json()["webhooks"]
    assert [w["id"] for w in listed] == [webhook["id"], chosen.json()["webhook"]["id"]]
    assert all("secret" not in w for w in listed)
    one = await api.client.get(f"{BASE}/{webhook['id']}", headers=api.auth())
    assert one.status_code == 200 and one.json()["webhook"] == {k: v for k, v in webhook.items() if k != "secret"}

    deleted = await api.client.delete(f"{BASE}/{webhook['id']}", headers=api.auth())
    assert deleted.status_code == 200
    assert (await api.client.get(f"{BASE}/{webhook['id']}", headers=api.auth())).status_code == 404
    assert len((await api.client.get(BASE, headers=api.auth())).json()["webhooks"]) == 1


async def test_bad_input_gets_a_400_that_says_what_is_wrong(api: Api) -> None:
    cases = [
        ({"url": "ftp://example.com/x", "eventTypes": ["message.final"]}, "url must be an http or https URL"),
        ({"url": "https:///nohost", "eventTypes": ["message.final"]}, "url must be an http or https URL"),
        ({"url": "http://example.com:99999/x", "eventTypes": ["message.final"]}, "url must be"),
        ({"url": 42, "eventTypes": ["message.final"]}, "url must be"),
        ({"url": "https://example.com/a\x00b", "eventTypes": ["message.final"]}, "url must be"),
        ({"url": "https://exa mple.com/", "eventTypes": ["message.final"]}, "url must be"),
        ({"url": "https://example.com", "eventTypes": []}, "eventTypes must be a non-empty list"),
        ({"url": "https://example.com"}, "eventTypes must be a non-empty list"),
        ({"url": "https://example.com", "eventTypes": ["message.final", "message.interim"]},
         "Unknown event type 'message.interim'; known event types: conversation.completed, message.final, "
         "insight.detected, tracker.matched, job.completed, job.failed."),
        ({"url": "https://example.com", "eventTypes": ["job.completed"], "conversationId": "abc"},
         "conversationId must be"),
        ({"url": "https://example.com", "eventTypes": ["job.completed"], "conversationId": "\u00b2"},
         "conversationId must be"),
        ({"url": "https://example.com", "eventTypes": ["job.completed"], "secret": "short"}, "secret must be"),
        (["https://example.com"], "Request body must be an object"),
    ]
    for body, message in cases:
        response = await api.client.post(BASE, headers=api.auth(), json=body)
        assert response.status_code == 400, body
        assert response.json()["message"].startswith(message), response.json()
    not_json = await api.client.post(BASE, headers=api.auth(), content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["message"] == "Request body must be JSON."
    assert (await api.client.post(BASE, json={"url": "https://example.com", "eventTypes": ["job.completed"]})
            ).status_code == 401
    bad_status = await api.client.get(f"{BASE}/x/deliveries?status=lost", headers=api.auth())
    assert bad_status.status_code == 400 and "pending, delivered, dead" in bad_status.json()["message"]


@pytest.mark.parametrize("database_kind", ["sqlite"])  # no database behaviour here
async def test_urls_naming_a_blocked_address_are_refused_by_default(api: Api) -> None:
    # Cloud metadata (169.254.169.254) however the address is written; loopback and private receivers stay allowed.
    for url, address in [("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
                         ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
                         ("http://2852039166/", "169.254.169.254"),
                         ("https://[fe80::1%25eth0]:8443/hook", "fe80::1"),
                         ("http://0.0.0.0:8080/hook", "0.0.0.0")]:
        response = await api.client.post(BASE, headers=api.auth(), json={"url": url, "eventTypes": ["message.final"]})
        assert response.status_code == 400, url
        message = response.json()["message"]
        assert message.startswith(f"url is not allowed: {address} is in "), message
        assert message.endswith("a network this server does not send requests to "
                                "(CONVOSCOPE_OUTBOUND_BLOCKED_NETWORKS)."), message
    assert (await api.client.get(BASE, headers=api.auth())).json()["webhooks"] == []
    for url in ("http://127.0.0.1:9000/hook", "http://10.1.2.3/hook", "https://hooks.example.com/x"):
        response = await api.client.post(BASE, headers=api.auth(), json={"url": url, "eventTypes": ["job.failed"]})
        assert response.status_code == 201, (url, response.text)


async def test_another_apps_webhook_is_not_found(api: Api) -> None:
    created = (await api.client.post(BASE, headers=api.auth(), json={
        "url": "https://hooks.example.com/a", "eventTypes": ["message.final"]})).json()["webhook"]
    other = await create_app(api.sessions, "other app")
    other_token, _ = api.tokens.issue(other.app_id)
    for method, path in [("GET", f"{BASE}/{created['id']}"), ("DELETE", f"{BASE}/{created['id']}"),
                         ("GET", f"{BASE}/{created['id']}/deliveries")]:
        response = await api.client.request(method, path, headers=api.auth(other_token))
        assert response.status_code == 404, (method, path)
        assert response.json()["message"] == f"Webhook with id {created['id']} does not exist."
    assert (await api.client.get(BASE, headers=api.auth(other_token))).json()["webhooks"] == []
    assert (await api.client.get(f"{BASE}/{created['id']}", headers=api.auth())).status_code == 200


async def test_the_delivery_log_lists_queued_events_newest_first(api: Api) -> None:
    webhook = (await api.client.post(BASE, headers=api.auth(), json={
        "url": "https://hooks.example.com/log", "eventTypes": ["message.final"]})).json()["webhook"]
    cid = "1700000000000007777"
    who = speaker(cid, "Ann")
    finals = [final(cid, api.app.app_id, "s1", who, i, i * 32_000, i * 32_000 + 16_000, f"Line {i}.",
                    1_700_000_000_000) for i in range(3)]
    events = [e for f in finals for e in events_from_record(TRANSCRIPTS_FINAL.name, f)]
    for at, event_ in enumerate(events):
        async with api.sessions.begin() as session:
            webhooks = await webhooks_of(session, {api.app.app_id})
            assert await enqueue(session, webhooks, [event_, event_], 1_800_000_000_000 + at) == 2
    async with api.sessions.begin() as session:  # queueing again is a no-op
        await enqueue(session, await webhooks_of(session, {api.app.app_id}), events, 1_900_000_000_000)

    log = await api.client.get(f"{BASE}/{webhook['id']}/deliveries", headers=api.auth())
    assert log.status_code == 200
    deliveries = log.json()["deliveries"]
    assert [d["eventId"] for d in deliveries] == [e.id for e in reversed(events)]
    first = deliveries[-1]
    assert first["status"] == "pending" and first["attempts"] == 0 and first["eventType"] == "message.final"
    assert first["conversationId"] == cid and first["lastStatusCode"] is None and first["deliveredAt"] is None
    assert first["createdAt"] == "2027-01-15T08:00:00.000Z" and first["nextAttemptAt"] == first["createdAt"]
    limited = await api.client.get(f"{BASE}/{webhook['id']}/deliveries?limit=1&status=pending", headers=api.auth())
    assert [d["eventId"] for d in limited.json()["deliveries"]] == [events[-1].id]
    assert (await api.client.get(f"{BASE}/{webhook['id']}/deliveries?status=dead", headers=api.auth())
            ).json()["deliveries"] == []
