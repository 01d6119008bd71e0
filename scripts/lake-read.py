#!/usr/bin/env python3
"""Reads one table of a local lake twice, with DuckDB and with pyarrow, each on its own, and
prints both as JSON: {"duckdb": [rows], "pyarrow": [rows]}, rows sorted, every value as JSON
(timestamps as RFC 3339 in UTC, the partition columns dt and hour as text and integer).

    scripts/lake-read.py <data-dir>/objects events
    scripts/lake-read.py <data-dir>/objects quarantine/billing_events
"""
import datetime
import json
import os
import sys

import duckdb
import pyarrow.dataset as ds


def value(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def normal(row):
    row = {k: value(v) for k, v in row.items()}
    row["dt"] = str(row["dt"])
    row["hour"] = int(row["hour"])
    return row


def by_duckdb(folder):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cur = con.execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = true)",
        [os.path.join(folder, "**", "*.parquet")],
    )
    names = [d[0] for d in cur.description]
    return [normal(dict(zip(names, r))) for r in cur.fetchall()]


def by_pyarrow(folder):
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    return [normal(r) for r in dataset.to_table().to_pylist()]


def main():
    root, table = sys.argv[1], sys.argv[2]
    folder = os.path.join(root, "lake", table)
    key = lambda r: json.dumps(r, sort_keys=True)
    out = {
        "duckdb": sorted(by_duckdb(folder), key=key),
        "pyarrow": sorted(by_pyarrow(folder), key=key),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
