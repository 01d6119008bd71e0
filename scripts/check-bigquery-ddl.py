"""Parses `imagelake bigquery ddl` output with sqlglot's BigQuery dialect and checks each
statement: a CREATE [OR REPLACE] EXTERNAL TABLE with BigQuery column types, format PARQUET and
its uris; a Hive-partitioned one also with `dt DATE, hour INT64`, hive_partition_uri_prefix and
require_hive_partition_filter = true.

sqlglot (30.x) does not know BigQuery's `WITH PARTITION COLUMNS (...)` clause: it is cut out,
its column list parsed on its own, and the rest parsed as the statement.

Usage: python check-bigquery-ddl.py FILE
"""

import re
import sys

import sqlglot
from sqlglot import exp

TYPES = {"STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "DATE", "NUMERIC", "BYTES"}
COLUMN = re.compile(r"^  `(\w+)` (\w+),?$", re.M)
PARTITIONS = re.compile(r"\nWITH PARTITION COLUMNS \((?P<columns>[^)]*)\)\n")


def columns(create: exp.Create) -> list[tuple[str, str]]:
    schema = create.this
    if not isinstance(schema, exp.Schema):
        sys.exit(f"no column list: {create.sql('bigquery')[:120]}")
    return [
        (c.name, c.args["kind"].sql("bigquery").upper())
        for c in schema.expressions
        if isinstance(c, exp.ColumnDef)
    ]


def check(statement: str) -> None:
    partitions = PARTITIONS.search(statement)
    rest = PARTITIONS.sub("\n", statement)
    create = sqlglot.parse_one(rest, read="bigquery")
    if not isinstance(create, exp.Create) or create.kind != "TABLE":
        sys.exit(f"not a CREATE TABLE: {rest[:120]}")
    sql = create.sql("bigquery").replace(" ", "")
    for needed in ("EXTERNALTABLE", "FORMAT='PARQUET'", "uris=['gs://"):
        if needed not in sql:
            sys.exit(f"{needed} missing in: {sql[:200]}")
    # As written (sqlglot would print TEXT as STRING).
    for name, kind in COLUMN.findall(statement):
        if kind not in TYPES:
            sys.exit(f"column {name}: {kind} is not a BigQuery type here")
    if len(COLUMN.findall(statement)) != len(columns(create)):
        sys.exit(f"columns not one per line: {rest[:200]}")
    if partitions:
        table = sqlglot.parse_one(f"CREATE TABLE p ({partitions['columns']})", read="bigquery")
        if columns(table) != [("dt", "DATE"), ("hour", "INT64")]:
            sys.exit(f"partition columns: {columns(table)}")
        for needed in ("hive_partition_uri_prefix='gs://", "require_hive_partition_filter=TRUE"):
            if needed not in sql:
                sys.exit(f"{needed} missing in: {sql[:300]}")


def main(path: str) -> None:
    text = open(path, encoding="utf-8").read()
    statements = [s.strip() for s in text.split(";\n") if s.strip()]
    if not statements:
        sys.exit("no statements")
    for statement in statements:
        check(statement)
    print(f"{len(statements)} statements parse as BigQuery")


if __name__ == "__main__":
    main(sys.argv[1])
