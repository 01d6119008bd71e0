#!/usr/bin/env python3
"""The anchor of scripts/bench-transforms: DuckDB running the SQL files of transforms/ for the 24
hours of a day, as lake-transform runs them (the same raw files per hour, the same images rewrite
set, customers carried from hour to hour), writing Parquet (zstd) to OUT. Prints the seconds of
the work, after the import.

    bench_transforms_duckdb.py <data-dir>/objects OUT
"""
import datetime
import glob
import os
import shutil
import sys
import time

import duckdb

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "transforms")
DAY = datetime.datetime(2026, 11, 30)
CUSTOMERS = ("customer_id VARCHAR, name VARCHAR, email VARCHAR, plan VARCHAR, "
             "created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ")


def sql(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def folder(objects, table, hour):
    return os.path.join(objects, "lake", table, hour.strftime("dt=%Y-%m-%d"), hour.strftime("hour=%H"))


def view(con, name, files):
    con.execute(f"DROP VIEW IF EXISTS {name}")
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")


def files(objects, table, hours):
    return sorted(f for h in hours for f in glob.glob(os.path.join(folder(objects, table, h), "*.parquet")))


def copy(con, query, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")


def main():
    objects, out = sys.argv[1], sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    texts = {n: sql(n + ".sql") for n in ["uploads_hourly", "api_requests_hourly", "images", "customers"]}
    started = time.monotonic()
    customers = os.path.join(out, "customers", "customers.parquet")
    for h in range(24):
        hour = DAY + datetime.timedelta(hours=h)
        view(con, "events", files(objects, "events", [hour]))
        view(con, "api_requests", files(objects, "api_requests", [hour]))
        for name, table in [("uploads_hourly", "uploads_hourly"), ("api_requests_hourly", "api_requests_hourly")]:
            copy(con, texts[name], os.path.join(folder(out, table, hour), "part-0.parquet"))
        # images: the upload hours the hour's events are about, then every event since the oldest.
        changed = [r[0] for r in con.execute(
            "SELECT DISTINCT substr(data->>'uploaded_at', 1, 13) FROM events "
            "WHERE image_id IS NOT NULL AND type LIKE 'image.%'").fetchall() if r[0]]
        uploads = sorted(datetime.datetime.strptime(k, "%Y-%m-%dT%H") for k in changed)
        uploads = [u for u in uploads if DAY <= u <= hour]
        if uploads:
            hours = [uploads[0] + datetime.timedelta(hours=i)
                     for i in range(int((hour - uploads[0]).total_seconds() // 3600) + 1)]
            view(con, "events", files(objects, "events", hours))
            con.execute("DROP TABLE IF EXISTS rewrite")
            con.execute("CREATE TABLE rewrite (upload_hour VARCHAR)")
            con.executemany("INSERT INTO rewrite VALUES (?)", [[u.strftime("%Y-%m-%dT%H")] for u in uploads])
            con.execute("DROP TABLE IF EXISTS images_rewritten")
            con.execute(f"CREATE TABLE images_rewritten AS {texts['images']}")
            for u in uploads:
                key = u.strftime("%Y-%m-%dT%H")
                copy(con, f"SELECT * EXCLUDE (upload_hour) FROM images_rewritten WHERE upload_hour = '{key}' "
                          "ORDER BY image_id", os.path.join(folder(out, "images", u), "part-0.parquet"))
        # customers: the table as it stands, and the hour's customer events.
        view(con, "events", files(objects, "events", [hour]))
        con.execute("DROP TABLE IF EXISTS previous")
        if os.path.exists(customers):
            con.execute(f"CREATE TABLE previous AS SELECT * FROM read_parquet('{customers}')")
        else:
            con.execute(f"CREATE TABLE previous ({CUSTOMERS})")
        copy(con, texts["customers"], customers + ".new")
        os.replace(customers + ".new", customers)
    print(f"{time.monotonic() - started:.2f} s: DuckDB {duckdb.__version__}, 24 hours")


if __name__ == "__main__":
    main()
