#!/usr/bin/env python3
"""The wire half of scripts/bench-pg: the dashboard queries through a running server's
PostgreSQL wire (psycopg 3, text results, one connection) and through its HTTP door
(POST /v1/sql, JSON), ROUNDS runs each, the first cold and the median of the others warm; then
SCRAM-SHA-256 logins per second (connect, SELECT 1, close) for LOGIN_SECONDS. One line per
query: NAME wire_cold_s wire_warm_s http_warm_s rows; then `logins N per_second`.

    bench_pg.py PG_PORT HTTP_PORT ADMIN_TOKEN QUERIES ROUNDS
"""
import json
import statistics
import sys
import time
import urllib.request

import psycopg

LOGIN_SECONDS = 5


def blocks(text):
    out = []
    for line in text.splitlines():
        if line.strip().startswith("-- name:"):
            out.append([line.split(":", 1)[1].strip(), ""])
        elif out:
            out[-1][1] += line + "\n"
    return out


def http(port, token, sql):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/sql",
        data=json.dumps({"sql": sql}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["row_count"]


def main(pg_port, http_port, token, queries, rounds):
    login = dict(host="127.0.0.1", port=pg_port, user="admin", password=token, dbname="imagelake")
    with psycopg.connect(**login, autocommit=True) as conn:
        for name, sql in blocks(open(queries).read()):
            wire, rows = [], 0
            for _ in range(max(rounds, 2)):
                started = time.perf_counter()
                rows = len(conn.execute(sql).fetchall())
                wire.append(time.perf_counter() - started)
            over_http = []
            for _ in range(max(rounds - 1, 1)):
                started = time.perf_counter()
                http(http_port, token, sql)
                over_http.append(time.perf_counter() - started)
            print(f"{name} {wire[0]:.4f} {statistics.median(wire[1:]):.4f} "
                  f"{statistics.median(over_http):.4f} {rows}", flush=True)
    logins, end = 0, time.perf_counter() + LOGIN_SECONDS
    started = time.perf_counter()
    while time.perf_counter() < end:
        with psycopg.connect(**login) as conn:
            conn.execute("SELECT 1").fetchone()
        logins += 1
    print(f"logins {logins} {logins / (time.perf_counter() - started):.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
