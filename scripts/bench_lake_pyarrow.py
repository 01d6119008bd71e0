#!/usr/bin/env python3
"""The anchor of scripts/bench-lake: pyarrow reads the hour's rows (NDJSON, as they sit in the
lake log) and writes them as one zstd Parquet file, the work the lake writer's flush does.
Prints the seconds of that work (after the imports)."""
import sys
import time

import pyarrow.json as pj
import pyarrow.parquet as pq

started = time.perf_counter()
table = pj.read_json(sys.argv[1])
pq.write_table(table, sys.argv[2], compression="zstd")
print(f"{time.perf_counter() - started:.3f} s for {table.num_rows} rows")
