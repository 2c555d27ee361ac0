"""Alembic migrations for the ledger; applied by `compliancebot db upgrade`."""
