"""Merge the pytest-benchmark JSON files of one sharded run into one, for github-action-benchmark.

Run (the benchmark workflow's report job)::

    python scripts/merge_benchmark_json.py bench.json artifacts/*/bench-shard-*.json

Each ``pytest bench --shard K/N --benchmark-json=bench-shard-K.json`` times its own cases; the
action's ``tool: pytest`` reads one file. The merged file keeps the first file's machine and
commit, the latest date and every benchmark once (:func:`imgcomp.report.merge
.merge_benchmark_json`); files of different commits, or timing a benchmark twice, are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgcomp.fsutil import atomic_write_text
from imgcomp.report.merge import merge_benchmark_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="the merged file to write")
    ap.add_argument("inputs", type=Path, nargs="+", help="the shards' --benchmark-json files")
    args = ap.parse_args(argv)
    try:
        docs = [json.loads(path.read_text(encoding="utf-8")) for path in args.inputs]
        merged = merge_benchmark_json(docs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"merge_benchmark_json: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(merged, indent=1) + "\n")
    count = len(merged["benchmarks"])
    print(f"merged {len(docs)} files, {count} benchmarks, into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
