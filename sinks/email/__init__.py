"""Summary emails (``sendSummaryEmail``): composition (pure), SMTP delivery, and the ``convoscope worker email``
consumer."""

from sinks.email.compose import SummaryEmailContent, compose_summary_email
from sinks.email.worker import EMAIL_GROUP, run_email_worker

__all__ = ["EMAIL_GROUP", "SummaryEmailContent", "compose_summary_email", "run_email_worker"]
