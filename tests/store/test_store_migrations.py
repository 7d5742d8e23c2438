"""The Alembic migrations: they build exactly the models' schema, on both backends, idempotently."""

from __future__ import annotations

import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, inspect

from immray.store import Base, head_revision, upgrade
from immray.store.migrate import alembic_config, migration_transaction

EXPECTED_TABLES = {
    "access_keys",
    "bindings",
    "clustering_states",
    "datasets",
    "figure_clusters",
    "figures",
    "files",
    "outbox",
    "projects",
    "signature_nonces",
    "tasks",
}


def schema_diff(engine: Engine, metadata: MetaData) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, metadata)


def test_upgrade_builds_every_table_on_an_empty_database(empty_engine: Engine) -> None:
    assert inspect(empty_engine).get_table_names() == []
    result = upgrade(empty_engine)
    assert (result.before, result.after, result.changed) == (None, head_revision(), True)
    assert set(inspect(empty_engine).get_table_names()) == EXPECTED_TABLES | {"alembic_version"}


def test_upgrade_again_changes_nothing(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    again = upgrade(empty_engine)
    assert (again.before, again.after, again.changed) == (head_revision(), head_revision(), False)


def test_upgrade_accepts_a_url(database_url: str) -> None:
    assert upgrade(database_url).after == head_revision()
    assert upgrade(database_url).changed is False


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    assert schema_diff(engine, Base.metadata) == []


def test_schema_comparison_notices_a_difference(engine: Engine) -> None:
    """The check above can fail: a model the migrations do not match shows up as a diff."""
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        copy = table.to_metadata(drifted)
        if table.name == "figures":
            copy.append_column(Column("age", Integer, nullable=True))
    diff = schema_diff(engine, drifted)
    assert [(op[0], op[2], op[3].name) for op in diff] == [("add_column", "figures", "age")]


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    config = alembic_config()
    with migration_transaction(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert upgrade(engine).before is None
    assert schema_diff(engine, Base.metadata) == []


def test_concurrent_upgrades_apply_the_migrations_once(empty_engine: Engine) -> None:
    """Two servers starting at once: one migrates, the other waits and finds the schema at head."""
    results, errors = [], []

    def run() -> None:
        try:
            results.append(upgrade(empty_engine))
        except Exception as exc:  # collected and reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(result.changed for result in results) == [False, True]
    assert schema_diff(empty_engine, Base.metadata) == []


def test_the_api_queries_have_their_indexes(engine: Engine) -> None:
    wanted = {
        "figure_clusters": [
            ["dataset_id", "face_count", "object_id"],
            ["dataset_id", "image_count", "object_id"],
            ["dataset_id", "created_at", "object_id"],
            ["dataset_id", "updated_at", "object_id"],
            ["dataset_id", "name", "object_id"],
        ],
        "figures": [["cluster_id"], ["dataset_id", "change_seq"]],
        "files": [["dataset_id", "custom_id"]],
        "tasks": [
            ["project_id", "task_type", "status"],
            ["project_id", "start_time"],
            ["status", "lease_expires_at"],
        ],
        "outbox": [["delivered_at", "next_attempt_at"]],
    }
    inspector = inspect(engine)
    for table, index_columns in wanted.items():
        indexed = [index["column_names"] for index in inspector.get_indexes(table)]
        for columns in index_columns:
            assert columns in indexed, (table, columns)
    unique = [constraint["column_names"] for constraint in inspector.get_unique_constraints("files")]
    assert ["dataset_id", "uri"] in unique  # also the index of URI prefix queries


def test_prefix_columns_compare_by_code_point(engine: Engine) -> None:
    """Alembic does not compare collations, so this checks the one the prefix filter relies on."""
    columns = [("files", "uri"), ("files", "custom_id"), ("projects", "name"), ("datasets", "name")]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            rows = connection.exec_driver_sql(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND collation_name IS NOT NULL"
            ).all()
            assert sorted((table, column) for table, column, collation in rows if collation == "C") == sorted(
                columns
            )
        else:  # SQLite compares text bytewise unless a column says otherwise
            for table, column in columns:
                ddl = connection.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).scalar()
                assert "COLLATE" not in ddl.upper(), (table, column)
