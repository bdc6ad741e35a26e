"""SQLite's dialect as PostgreSQL runs it (`engine.to_postgres`), and values production text may carry."""

from __future__ import annotations

from prodloop.server.context import AppContext
from prodloop.server.store.engine import redacted, to_postgres


def test_an_upsert_reads_the_stored_row_by_name_and_the_proposed_one_as_excluded() -> None:
    sql = to_postgres(
        "INSERT INTO t (k, n, a) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET n = n + excluded.n,"
        " a = min(a, excluded.a), b = CASE WHEN excluded.a >= a THEN f(excluded.b) ELSE b END,"
        " c = (SELECT max(x) FROM y WHERE y.k = k) WHERE n < 3 RETURNING id, n"
    )
    assert sql == (
        "INSERT INTO t (k, n, a) VALUES (%s, %s, %s) ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n,"
        " a = LEAST(t.a, excluded.a), b = CASE WHEN excluded.a >= t.a THEN f(excluded.b) ELSE t.b END,"
        " c = (SELECT max(x) FROM y WHERE y.k = k) WHERE t.n < 3 RETURNING id, n"
    )


def test_placeholders_percent_signs_null_tests_and_insert_or_ignore() -> None:
    assert to_postgres("SELECT 1 FROM t WHERE a LIKE '50%' AND b % 24 = ? AND c IS ? AND d IS NOT ?") == (
        "SELECT 1 FROM t WHERE a LIKE '50%%' AND b %% 24 = %s AND c IS NOT DISTINCT FROM %s AND d IS DISTINCT FROM %s"
    )
    assert to_postgres("SELECT 1 WHERE ? IS NULL OR e = ?") == "SELECT 1 WHERE %s::text IS NULL OR e = %s"
    assert to_postgres("INSERT OR IGNORE INTO u (a) VALUES (?) RETURNING a") == (
        "INSERT INTO u (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING a"
    )
    assert to_postgres("UPDATE s SET v = :v WHERE k = :k AND j::jsonb ->> 'x' = 'it''s ?'") == (
        "UPDATE s SET v = %(v)s WHERE k = %(k)s AND j::jsonb ->> 'x' = 'it''s ?'"
    )
    assert to_postgres("SELECT max(a), min(b, c) FROM t") == "SELECT max(a), LEAST(b, c) FROM t"


def test_the_password_of_a_database_url_is_never_shown() -> None:
    assert redacted("postgresql://team:s3cret@db.internal:6543/prodloop?sslmode=require") == (
        "postgresql://team@db.internal:6543/prodloop"
    )


def test_text_with_nul_and_lone_surrogates_is_stored_and_sums_stay_numbers(ctx: AppContext, engine: str) -> None:
    # Production text reaches names, titles, values; PostgreSQL's text holds neither NUL nor a lone surrogate.
    name = "p\x00q\ud800" if engine == "postgres" else "p\x00q"
    project = ctx.store.create_project(name)
    stored = ctx.store.get_project(project.id)
    assert stored is not None and stored.name == ("p\ufffdq?" if engine == "postgres" else name)
    (total, mean) = ctx.store.reader().execute("SELECT sum(id), avg(id * 1.0) FROM projects").fetchone()
    assert (total, type(total), mean) == (project.id, int, float(project.id))
