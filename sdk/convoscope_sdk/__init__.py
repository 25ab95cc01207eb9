"""Python client for convoscope, shaped like the official ``symbl`` SDK.

Code written for ``symbl`` runs after changing its import line to ``import convoscope_sdk as symbl`` and pointing
``CONVOSCOPE_BASE_URL`` (or ``symbl.configure(base_url=...)``) at the server: ``symbl.Streaming``,
``symbl.Conversations``, ``symbl.Telephony`` and ``symbl.Audio`` keep their names and signatures.
Under them is a native asyncio client, ``AsyncClient``.
"""

from convoscope_sdk.backoff import Backoff
from convoscope_sdk.client import AsyncClient
from convoscope_sdk.config import Credentials, Timeouts
from convoscope_sdk.conversation import AsyncConversation, AsyncJob, JobStatus
from convoscope_sdk.exceptions import (
    ApiError,
    AuthenticationError,
    CallbackError,
    ConfigurationError,
    ConnectionClosedError,
    ConversationResumeWarning,
    ConvoscopeError,
    JobFailedError,
    NetworkError,
    NotFoundError,
    StreamingError,
    TimeoutError,
)
from convoscope_sdk.records import EventText, Record
from convoscope_sdk.streaming import AsyncStreamingConnection
from convoscope_sdk.sync import (
    AudioApi,
    Connection,
    Conversation,
    ConversationsApi,
    StreamingApi,
    StreamingConnection,
    TelephonyApi,
    configure,
)
from convoscope_sdk.telephony import AsyncSubscription, AsyncTelephonyConnection

__version__ = AsyncClient.version

# The official SDK's module-level entry points (no I/O happens until one is used).
Streaming = StreamingApi()
Conversations = ConversationsApi()
Telephony = TelephonyApi()
Audio = AudioApi()

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncConversation",
    "AsyncJob",
    "AsyncStreamingConnection",
    "AsyncSubscription",
    "AsyncTelephonyConnection",
    "Audio",
    "AudioApi",
    "AuthenticationError",
    "Backoff",
    "CallbackError",
    "ConfigurationError",
    "Connection",
    "ConnectionClosedError",
    "Conversation",
    "ConversationResumeWarning",
    "Conversations",
    "ConversationsApi",
    "ConvoscopeError",
    "Credentials",
    "EventText",
    "JobFailedError",
    "JobStatus",
    "NetworkError",
    "NotFoundError",
    "Record",
    "Streaming",
    "StreamingApi",
    "StreamingConnection",
    "StreamingError",
    "Telephony",
    "TelephonyApi",
    "TimeoutError",
    "Timeouts",
    "configure",
]
