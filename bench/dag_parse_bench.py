"""How long each DAG file takes to parse, beyond starting Python and importing Airflow.

Each file is measured in a fresh interpreter (so files do not share each other's imports):
the child first imports what every DAG file uses from Airflow (`airflow.sdk` and its `DAG`,
`task`, `Asset`, `AssetWatcher`, operator bases: the DAG processor has them loaded once),
then times executing the file; `--repeat` runs, median reported. Target: < 0.3 s per file.

Bytecode: the children write and reuse `.pyc` files under a private cache prefix (a warm-up
run fills it), like an image with compiled bytecode. `--no-bytecode` measures compiling
every module from source instead (what `PYTHONDONTWRITEBYTECODE=1` without `.pyc` costs).

    .venv/bin/python bench/dag_parse_bench.py [--repeat 3] [dags/file.py ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3

_CHILD = r"""
import json, runpy, sys, time
started = time.perf_counter()
from airflow.sdk import DAG, Asset, AssetWatcher, BaseOperator, BaseSensorOperator, task
airflow_s = time.perf_counter() - started
started = time.perf_counter()
namespace = runpy.run_path(sys.argv[1], run_name="__dag_parse_bench__")
parse_s = time.perf_counter() - started
dags = sorted(v.dag_id for v in namespace.values() if isinstance(v, DAG))
print(json.dumps({"airflow_s": airflow_s, "parse_s": parse_s, "dags": dags}))
"""


def measure(path: Path, env: dict[str, str]) -> dict[str, object]:
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    ).stdout
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-bytecode", action="store_true")
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "dags").glob("*.py"))
    env = dict(os.environ)
    cache = tempfile.TemporaryDirectory(prefix="dag-parse-pyc-")
    if args.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache.name
        for path in files:  # warm-up: fills the bytecode cache
            measure(path, env)
    print(f"{'file':36} {'dags':28} {'airflow import':>15} {'parse (median)':>15}")
    slow = 0
    for path in files:
        runs = [measure(path, env) for _ in range(args.repeat)]
        parse = statistics.median(float(r["parse_s"]) for r in runs)  # type: ignore[arg-type]
        airflow = statistics.median(float(r["airflow_s"]) for r in runs)  # type: ignore[arg-type]
        dags = ",".join(runs[0]["dags"])  # type: ignore[arg-type]
        flag = "" if parse < TARGET_S else "  <-- over target"
        slow += parse >= TARGET_S
        print(f"{path.name:36} {dags:28} {airflow:14.2f}s {parse:14.3f}s{flag}")
    mode = "compiled from source" if args.no_bytecode else "with cached bytecode"
    print(f"target: < {TARGET_S} s per file beyond the Airflow import ({mode}); {slow} over")
    cache.cleanup()
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
