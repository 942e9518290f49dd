"""Alembic migrations of the gateway's schema, run programmatically by gateway/storage/migrate.py."""
