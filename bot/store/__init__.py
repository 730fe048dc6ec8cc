"""Persistence: SQLModel tables (``models``) and the database handle (``db``)."""
