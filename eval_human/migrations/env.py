"""Alembic environment for the human-study schema.

Used programmatically (``StudyStore.upgrade`` passes its open connection in ``config.attributes["connection"]``)
or from the command line (``alembic -c eval_human/migrations/alembic.ini -x db=URL upgrade head``).
"""

from alembic import context
from sqlalchemy import create_engine

from eval_human.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:  # noqa: ANN001 - a SQLAlchemy Connection
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most constraints in place; batch mode rebuilds tables for such changes.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL without a database connection (``alembic upgrade head --sql``)."""
    context.configure(
        url=context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the connection handed in by the store, or a fresh engine for the URL given on the CLI."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as fresh:
        _configure(fresh)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
