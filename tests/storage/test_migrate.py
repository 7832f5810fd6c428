from storage import migrate


def test_migrate_applies_every_file_once_and_records_it(db):
    with db.connection() as conn:
        states = migrate.status(conn)
        assert states and all(s.applied_at is not None and s.checksum_ok for s in states)
        assert migrate.migrate(conn) == []  # second run: nothing left to apply
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in migrate.available()]


def test_registry_is_loaded_with_1589_merchants_each_with_a_fume_monitor(db):
    with db.connection() as conn:
        merchants = conn.execute("SELECT count(*) FROM subjects WHERE kind = 'merchant'").fetchone()[0]
        monitors = conn.execute(
            "SELECT count(DISTINCT d.subject_id) FROM devices d JOIN subjects s USING (subject_id)"
            " WHERE d.kind = 'fume' AND s.kind = 'merchant'").fetchone()[0]
    assert merchants == 1589
    assert monitors == 1589
