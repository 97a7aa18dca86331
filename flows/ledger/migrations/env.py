"""Alembic environment: migrations run on the connection the Ledger hands over."""

from alembic import context
from sqlalchemy import create_engine

from flows.ledger.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic -x url=… upgrade head` from the command line
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
