"""Persistence: the only package that imports SQLAlchemy.

``db`` owns engines, sessions and migrations; ``models`` the tables;
``secrets`` encryption at rest; ``clusters`` and ``tokens`` the repositories
the rest of Pilothouse calls.
"""
