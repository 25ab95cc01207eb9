"""The webhook sink: events from the topics, signed and delivered to the URLs apps registered."""

from sinks.webhooks.logic import EVENT_TYPES, WebhookEvent, verify_signature
from sinks.webhooks.worker import WEBHOOK_TOPICS, WEBHOOKS_GROUP, run_webhook_worker

__all__ = ["EVENT_TYPES", "WEBHOOKS_GROUP", "WEBHOOK_TOPICS", "WebhookEvent", "run_webhook_worker", "verify_signature"]
