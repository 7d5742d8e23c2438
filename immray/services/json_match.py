"""``column[key] == value`` on a JSON object column, the same on SQLite and PostgreSQL.

Label selectors (``key=value``) arrive as text, so a label matches by its JSON spelling: a string label by
its text, a number or boolean by how JSON writes it (``n=1`` matches ``{"n": 1}``, ``ok=true`` matches
``{"ok": true}``), as ListTasks' TagSelector does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal
from sqlalchemy.orm import Session


def json_key_equals(session: Session, column: Any, key: str, value: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return column[key].as_string() == value  # ->> spells strings bare, numbers and booleans as JSON
    if '"' in key or "\\" in key:
        raise ValueError("a label key holds neither quotes nor backslashes")
    path = '$."' + key + '"'
    kind = func.json_type(column, path)
    spelled = case(
        (kind == "true", literal("true")),
        (kind == "false", literal("false")),
        (kind == "null", literal("null")),
        else_=cast(func.json_extract(column, path), String),
    )
    return and_(kind.is_not(None), spelled == value)
