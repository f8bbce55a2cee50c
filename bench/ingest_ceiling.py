"""The database's own ceiling for an events import: the same rows, into the same schema, by the
plainest fast path each database has, timed alone. `winback bench cycle` runs it right after its
events import and reports winback's rate as a ratio to it.

- SQLite: a new database file with the source's whole schema (tables, indexes, triggers) and
  its pragmas (WAL, synchronous=NORMAL, a 64 MB page cache), then Python's `executemany` of a
  one-row INSERT in one transaction. Reading the source rows is not timed; only the inserts and
  the commit are.
- PostgreSQL: a schema `winback_ceiling` in the source database, with `events` created LIKE
  the source's (columns, defaults, indexes) and the source's insert trigger, then `psql \\copy
  ... FROM` a file exported beforehand. Only the COPY is timed.

Prints JSON: rows, seconds, rows_per_second.

Usage: ingest_ceiling.py sqlite SOURCE_DB SCRATCH_DB
       ingest_ceiling.py postgres SOURCE_URL SCRATCH_FILE"""
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

CHUNK = 50_000
COLUMNS = "event_key, customer_id, type, occurred_at, payload, inserted_at"


def sqlite_ceiling(source_path, scratch_path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(scratch_path + suffix):
            os.remove(scratch_path + suffix)
    src = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    dst = sqlite3.connect(scratch_path, isolation_level=None)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.execute("PRAGMA synchronous=NORMAL")
    dst.execute("PRAGMA cache_size=-65536")
    dst.execute("PRAGMA foreign_keys=ON")
    ddl = src.execute(
        "SELECT type, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 WHEN 'index' THEN 2 ELSE 3 END"
    ).fetchall()
    for _, sql in ddl:
        dst.execute(sql)
    insert = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    rows = 0
    timed = 0.0
    dst.execute("BEGIN")
    cursor = src.execute(f"SELECT {COLUMNS} FROM events ORDER BY id")
    while True:
        chunk = cursor.fetchmany(CHUNK)
        if not chunk:
            break
        start = time.perf_counter()
        dst.executemany(insert, chunk)
        timed += time.perf_counter() - start
        rows += len(chunk)
    start = time.perf_counter()
    dst.execute("COMMIT")
    timed += time.perf_counter() - start
    dst.close()
    src.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(scratch_path + suffix):
            os.remove(scratch_path + suffix)
    return rows, timed


def psql(url, *args, stdin=None):
    return subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-At", *args],
        check=True,
        capture_output=True,
        text=True,
        stdin=stdin,
    ).stdout


def postgres_ceiling(url, scratch_file):
    psql(url, "-c", f"\\copy (SELECT {COLUMNS} FROM events ORDER BY id) TO '{scratch_file}'")
    trigger = psql(
        url,
        "-c",
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'public.events'::regclass "
        "AND NOT tgisinternal",
    ).strip()
    setup = [
        "DROP SCHEMA IF EXISTS winback_ceiling CASCADE",
        "CREATE SCHEMA winback_ceiling",
        "CREATE TABLE winback_ceiling.events (LIKE public.events INCLUDING ALL)",
    ]
    for line in filter(None, trigger.splitlines()):
        # pg_get_triggerdef qualifies the table only where the search path needs it.
        setup.append(re.sub(r" ON (public\.)?events ", " ON winback_ceiling.events ", line))
    psql(url, "-c", "; ".join(setup))
    start = time.perf_counter()
    psql(url, "-c", f"\\copy winback_ceiling.events ({COLUMNS}) FROM '{scratch_file}'")
    seconds = time.perf_counter() - start
    rows = int(psql(url, "-c", "SELECT count(*) FROM winback_ceiling.events").strip())
    psql(url, "-c", "DROP SCHEMA winback_ceiling CASCADE")
    os.remove(scratch_file)
    return rows, seconds


def main():
    kind, source, scratch = sys.argv[1], sys.argv[2], sys.argv[3]
    if kind == "sqlite":
        rows, seconds = sqlite_ceiling(source, scratch)
    elif kind == "postgres":
        rows, seconds = postgres_ceiling(source, scratch)
    else:
        sys.exit(f"unknown database kind {kind!r}: expected sqlite or postgres")
    print(json.dumps({"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds}))


if __name__ == "__main__":
    main()
