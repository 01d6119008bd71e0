#!/usr/bin/env python3
"""Runs one of the SQL files of transforms/ with DuckDB on the raw Parquet files it read, and
checks that imagelake (DataFusion) wrote the same rows. The spec is one JSON argument:

    {"sql": "transforms/uploads_hourly.sql",
     "tables": {"events": ["<objects>/lake/events/dt=2026-11-30/hour=10", ...]},
     "values": {"rewrite": {"upload_hour": ["2026-11-30T10"]}},
     "empty": {"previous": "customer_id VARCHAR, ..."},
     "output": ["<objects>/lake/uploads_hourly/dt=2026-11-30/hour=10/part-0.parquet"],
     "drop": ["upload_hour"]}

Prints {"rows": N} when both agree; otherwise the rows of each side and exits 1. Values are
compared as JSON: timestamps in UTC, floats to 9 significant digits.
"""
import datetime
import glob
import json
import os
import sys

import duckdb


def value(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(v, float):
        return float(f"{v:.9g}")
    return v


def rows(cur, drop=()):
    names = [d[0] for d in cur.description]
    out = []
    for r in cur.fetchall():
        row = {k: value(v) for k, v in zip(names, r) if k not in drop}
        out.append(row)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def main():
    spec = json.loads(sys.argv[1])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, folders in spec.get("tables", {}).items():
        files = sorted(f for d in folders for f in glob.glob(os.path.join(d, "*.parquet")))
        if files:
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet(?, union_by_name = true)",
                [files],
            )
        else:
            raise SystemExit(f"no files for {name}: {folders}")
    for name, columns in spec.get("values", {}).items():
        (column, values), = columns.items()
        con.execute(f"CREATE TABLE {name} ({column} VARCHAR)")
        con.executemany(f"INSERT INTO {name} VALUES (?)", [[v] for v in values])
    for name, schema in spec.get("empty", {}).items():
        con.execute(f"CREATE TABLE {name} ({schema})")
    with open(spec["sql"]) as f:
        sql = f.read()
    expected = rows(con.execute(sql), spec.get("drop", ()))
    written = rows(con.execute("SELECT * FROM read_parquet(?)", [spec["output"]]))
    if expected != written:
        json.dump({"duckdb": expected, "imagelake": written}, sys.stdout, indent=1, default=str)
        sys.exit(1)
    json.dump({"rows": len(written)}, sys.stdout)


if __name__ == "__main__":
    main()
