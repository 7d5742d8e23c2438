"""The database handle the use cases share: one engine, a session factory for writes and one for reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from immray.store import make_engine, session_factory, upgrade


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]

    @classmethod
    def connect(cls, url: str | URL, *, migrate: bool = False) -> Database:
        """An engine on ``url``; ``migrate`` applies the migrations first (idempotent)."""
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls.on(engine)

    @classmethod
    def on(cls, engine: Engine) -> Database:
        return cls(engine, session_factory(engine), session_factory(engine, read_only=True))

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that may write; committed when the block ends, rolled back on an exception."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction; on SQLite it runs beside a writer instead of waiting for it."""
        with self.read_sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
