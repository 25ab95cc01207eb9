"""Signed links to a conversation's page (``GET /conversations/{id}``): what summary emails, ``summaryInfo`` and
``POST .../experiences`` hand out. A link carries a view token, good for that one conversation until it expires."""

from __future__ import annotations

from urllib.parse import quote

from convoscope.auth import TokenIssuer
from convoscope.settings import Settings

__all__ = ["conversation_page_url"]


def conversation_page_url(settings: Settings, tokens: TokenIssuer, app_id: str, conversation_id: str,
                          *, ttl_s: int | None = None, base_url: str | None = None) -> str:
    """``base_url``: where the client reached us, when CONVOSCOPE_PUBLIC_URL does not say."""
    token = tokens.issue_view_token(app_id, conversation_id, ttl_s or settings.view_link_ttl_s)
    base = settings.public_url or base_url or settings.base_url()
    return f"{base.rstrip('/')}/conversations/{quote(conversation_id, safe='')}?token={token}"
