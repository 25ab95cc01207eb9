"""The Symbl-compatible REST API: ``api_routes()`` plus ``api_exception_handlers()`` for JSON errors."""

from convoscope.api.routes import (
    CONVERSATION_NOT_FOUND,
    TOKEN_INVALID,
    ApiError,
    api_exception_handlers,
    api_routes,
    authenticate,
    error_response,
)

__all__ = [
    "CONVERSATION_NOT_FOUND",
    "TOKEN_INVALID",
    "ApiError",
    "api_exception_handlers",
    "api_routes",
    "authenticate",
    "error_response",
]
