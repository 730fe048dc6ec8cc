"""Bulk writes of the triage hot path, straight to the SQLite driver.

A storm writes thousands of alert rows per transaction. Through SQLAlchemy Core every row of an
``executemany`` goes through parameter construction and the JSON type's bind processor in Python, which
costs more than SQLite's own work. On SQLite these helpers hand the rows to the driver instead: one
multi-row ``INSERT ... RETURNING`` per chunk (bounded by SQLite's host-parameter limit) and plain
``executemany`` for updates. JSON columns are serialised with ``json.dumps`` exactly as SQLAlchemy's JSON
type does, so the rows read back the same. PostgreSQL keeps the Core statements (``service.py``).
Table and column names come from the models, never from input.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

# SQLite allows 32766 host parameters per statement since 3.32, 999 before.
MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def _dump(value: Any) -> str:
    return "[]" if value == [] else json.dumps(value)


def _row(row: dict[str, Any], cols: Sequence[str], json_cols: frozenset[str]) -> Iterable[Any]:
    return (_dump(row[c]) if c in json_cols else row[c] for c in cols)


async def insert_returning(s: AsyncSession, table: str, rows: list[dict[str, Any]], json_cols: frozenset[str],
                           returning: Sequence[str]) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (all with the same keys) and return the ``returning`` columns of each (in no set order)."""
    if not rows:
        return []
    cols = list(rows[0])
    conn = await s.connection()
    per = max(1, MAX_PARAMS // len(cols))
    one = "(" + ",".join("?" * len(cols)) + ")"
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES {','.join([one] * len(chunk))} "
               f"RETURNING {', '.join(returning)}")
        params = tuple(v for r in chunk for v in _row(r, cols, json_cols))
        out.extend(tuple(r) for r in (await conn.exec_driver_sql(sql, params)).all())
    return out


async def update_many(s: AsyncSession, table: str, key_col: str, key: str, rows: list[dict[str, Any]],
                      json_cols: frozenset[str]) -> None:
    """``UPDATE table SET <every other key> WHERE <key_col> = row[key]`` for each row, as one ``executemany``."""
    if not rows:
        return
    cols = [c for c in rows[0] if c != key]
    sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} WHERE {key_col} = ?"
    params = [(*_row(r, cols, json_cols), r[key]) for r in rows]
    conn = await s.connection()
    await conn.exec_driver_sql(sql, params)


async def insert_many(s: AsyncSession, table: str, rows: list[dict[str, Any]], suffix: str = "") -> None:
    """``INSERT INTO table (...) VALUES (?, ...) <suffix>`` for each row (no JSON columns), as one ``executemany``."""
    if not rows:
        return
    cols = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))}) {suffix}"
    conn = await s.connection()
    await conn.exec_driver_sql(sql, [tuple(r[c] for c in cols) for r in rows])
