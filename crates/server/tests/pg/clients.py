"""The Postgres wire through Python's clients, as BI tools drive them: psycopg 3 (text and
binary, parameters of each type), asyncpg (prepared statements, binary) and SQLAlchemy's
inspector (what Superset and Metabase read at connect). Prints one JSON object of what each
step saw; a step that fails records its error, and the Rust test decides."""

import asyncio
import datetime as dt
import json
import sys
import time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sslmode = sys.argv[5] if len(sys.argv) > 5 else "disable"
seen = {}
TODAY = "uploaded_at > now() - INTERVAL '1 day'"


def step(name):
    def run(f):
        try:
            seen[name] = f()
        except Exception as e:  # the test reads the error
            seen[name] = {"error": f"{type(e).__name__}: {e}"}
        return f

    return run


def conninfo():
    return dict(host=host, port=port, user=user, password=password, dbname="imagelake", sslmode=sslmode)


@step("psycopg_text")
def _():
    import psycopg

    with psycopg.connect(**conninfo()) as conn:
        own = conn.execute(f"SELECT count(*) FROM live.images WHERE {TODAY}").fetchone()[0]
        when = dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.timezone.utc)
        row = conn.execute(
            "SELECT %s AS i, %s AS t, %s AS f, %s AS b, %s AS d, %s AS ts, %s AS n",
            (42, "héllo", 2.5, True, dt.date(2026, 12, 1), when, None),
        ).fetchone()
        return {
            "own_images": own,
            "params": [row[0], row[1], row[2], row[3], row[4].isoformat(), row[5].isoformat(), row[6]],
        }


@step("psycopg_binary")
def _():
    import psycopg

    with psycopg.connect(**conninfo()) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT image_id, bytes, uploaded_at FROM live.images WHERE bytes > %s AND {TODAY} ORDER BY uploaded_at",
                (0,),
            )
            rows = cur.fetchall()
            return {"rows": len(rows), "types": sorted({type(v).__name__ for r in rows for v in r})}


@step("psycopg_refused")
def _():
    import psycopg

    with psycopg.connect(**conninfo()) as conn:
        try:
            conn.execute("DROP TABLE events")
        except psycopg.Error as e:
            return {"sqlstate": e.sqlstate, "message": str(e)}
        return {"sqlstate": None}


@step("psycopg_cancel")
def _():
    import threading

    import psycopg

    with psycopg.connect(**conninfo()) as conn:
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        try:
            conn.execute(
                "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b"
            )
        except psycopg.Error as e:
            return {"sqlstate": e.sqlstate, "seconds": round(time.monotonic() - started, 1)}
        finally:
            timer.cancel()
        return {"sqlstate": None}


@step("asyncpg")
def _():
    import asyncpg

    async def go():
        conn = await asyncpg.connect(
            host=host, port=port, user=user, password=password, database="imagelake",
            ssl=None if sslmode == "disable" else "require",
        )
        try:
            stmt = await conn.prepare(f"SELECT count(*) AS n FROM live.images WHERE bytes > $1 AND {TODAY}")
            first = await stmt.fetchval(0)
            again = await stmt.fetchval(10**12)
            row = await conn.fetchrow("SELECT $1::bigint + 1 AS n, $2::text AS t", 41, "x")
            return {"count": first, "none_that_big": again, "row": [row["n"], row["t"]]}
        finally:
            await conn.close()

    return asyncio.run(go())


@step("sqlalchemy")
def _():
    import sqlalchemy as sa

    url = sa.engine.URL.create(
        "postgresql+psycopg", username=user, password=password, host=host, port=port,
        database="imagelake", query={"sslmode": sslmode},
    )
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        tables = sorted(inspector.get_table_names())
        schemas = sorted(inspector.get_schema_names())
        columns = {c["name"]: str(c["type"]) for c in inspector.get_columns("images")} if "images" in tables else {}
        with engine.connect() as conn:
            own = conn.execute(sa.text(f"SELECT count(*) FROM live.images WHERE {TODAY}")).scalar()
        return {"tables": tables, "schemas": schemas, "image_columns": columns, "own_images": own,
                "server_version": list(engine.dialect.server_version_info or [])}
    finally:
        engine.dispose()


print(json.dumps(seen, default=str))
