#!/usr/bin/env python3
"""The anchor of scripts/bench-sql: DuckDB running the same dashboard queries on the same
Parquet files, with views of the same names over them (Hive partitions dt DATE and hour INT).
ROUNDS runs of each query in one process: the first cold (a fresh connection), the median of the
others warm. One line per query: NAME cold_s warm_s rows.

    bench_sql_duckdb.py <data-dir>/objects QUERIES ROUNDS
"""
import os
import statistics
import sys
import time

import duckdb

HOURLY = ["events", "api_requests", "images", "uploads_hourly", "api_requests_hourly"]
FILES = ["customers", "job_runs"]


def blocks(text):
    out = []
    for line in text.splitlines():
        if line.strip().startswith("-- name:"):
            out.append([line.split(":", 1)[1].strip(), ""])
        elif out:
            out[-1][1] += line + "\n"
    return out


def main(objects, queries, rounds):
    con = duckdb.connect()
    lake = os.path.join(objects, "lake")
    for table in HOURLY:
        pattern = os.path.join(lake, table, "*", "*", "*.parquet")
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', "
            "hive_partitioning = true, hive_types = {'dt': DATE, 'hour': INTEGER}, union_by_name = true)"
        )
    for table in FILES:
        path = os.path.join(lake, table, f"{table}.parquet")
        if os.path.exists(path):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    for name, sql in blocks(open(queries).read()):
        seconds, rows = [], 0
        for _ in range(max(rounds, 2)):
            started = time.perf_counter()
            rows = len(con.execute(sql).fetchall())
            seconds.append(time.perf_counter() - started)
        print(f"{name} {seconds[0]:.4f} {statistics.median(seconds[1:]):.4f} {rows}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
