"""Runs one Nexmark query on the real Flink (shared/flink's installation) and prints its
final result as CSV, one row per line, for brisk's fixtures (see generate.sh).

usage: python flink_sql.py DDL.sql QUERY.sql DIR

Like shared/flink/run_sql.py (streaming mode, parallelism 1, UTC), but it applies the
changelog of an updating query and prints the rows that remain, so updating and
insert-only queries compare the same way: -U/-D retract a row, +I/+U add one (q4). A
query whose file says `-- upsert key: N` is an upsert stream (Flink leaves out -U: q9's
top-1 rank): a +I/+U row replaces the row with the same column N (from 1), -D deletes it.
Timestamps print as 2015-07-15 00:00:00.123; DECIMALs with their scale; NULL as ''.
"""
import collections, datetime, os, sys
from pyflink.table import EnvironmentSettings, TableEnvironment
from pyflink.common import RowKind

def statements(text):
    buf = []
    for line in text.splitlines():
        if line.strip().startswith("--"):
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip().rstrip(";")
            buf = []
            if stmt:
                yield stmt

def show(v):
    if v is None:
        return ""
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(v)

ddl, query, data = sys.argv[1], sys.argv[2], sys.argv[3]
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("parallelism.default", "1")
env.get_config().set("table.local-time-zone", "UTC")
for stmt in statements(open(ddl).read().replace("${DIR}", data)):
    env.execute_sql(stmt)
*setup, select = list(statements(open(query).read()))
for stmt in setup:
    env.execute_sql(stmt)
upsert_key = None
for line in open(query):
    if line.startswith("-- upsert key:"):
        upsert_key = int(line.split(":")[1]) - 1
rows = collections.Counter()
by_key = {}
with env.execute_sql(select).collect() as results:
    for row in results:
        line = ",".join(show(v) for v in row)
        adds = row.get_row_kind() in (RowKind.INSERT, RowKind.UPDATE_AFTER)
        if upsert_key is not None:
            key = row[upsert_key]
            if adds:
                by_key[key] = line
            elif row.get_row_kind() == RowKind.DELETE:
                by_key.pop(key, None)
        elif adds:
            rows[line] += 1
        else:
            rows[line] -= 1
            if rows[line] == 0:
                del rows[line]
for line in sorted(list(rows.elements()) + list(by_key.values())):
    print(line)
