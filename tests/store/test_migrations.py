"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL: a model change without
its migration (or a migration that drifts from the model) fails here rather than in a deployment."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from convoscope.db.engine import create_engine, migrate
from convoscope.db.models import Base


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}),
                                              Base.metadata)
            )
    finally:
        await engine.dispose()
    relevant = [d for d in differences if not (isinstance(d, tuple) and d[0] == "remove_table"
                                                 and d[1].name == "alembic_version")]
    assert relevant == [], relevant
