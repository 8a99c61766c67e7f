"""The migrations and the models describe the same tables."""

from alembic import command
from alembic.config import Config


def test_models_match_the_migrations(alembic_config: Config, migrated: None) -> None:
    # Fails with the differences when a model changed without a migration (or the reverse).
    command.check(alembic_config)
