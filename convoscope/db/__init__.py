"""The conversation store: SQLAlchemy models, engines and Alembic migrations (SQLite and PostgreSQL)."""

from convoscope.db.engine import create_engine, database_url, dialect_insert, migrate, session_factory
from convoscope.db.models import App, Base, Connection, Conversation, Member, Message, SigningKey

__all__ = [
    "App",
    "Base",
    "Connection",
    "Conversation",
    "Member",
    "Message",
    "SigningKey",
    "create_engine",
    "database_url",
    "dialect_insert",
    "migrate",
    "session_factory",
]
