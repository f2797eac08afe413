"""`starling topics`: print the topic catalog and access map."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="print the topic catalog and the access map",
        description="Print the topic catalog (one source of truth for every topic).",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="the docs/topics.md page")
    output.add_argument("--json", action="store_true", help="machine-readable, for scripts")
    parser.add_argument(
        "--brokers",
        type=_positive_int,
        default=None,
        help="cap replication to a cluster of this many brokers (default: production targets)",
    )
    parser.set_defaults(handler=_run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from starling.catalog_docs import render_markdown
    from starling.topics import CATALOG

    catalog = CATALOG.for_cluster(args.brokers) if args.brokers else CATALOG
    if args.markdown:
        sys.stdout.write(render_markdown(catalog))
        return 0
    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replicas,
            "config": spec.kafka_config(),
            "events": list(spec.event_type_tags),
            "key": spec.key,
        }
        for spec in catalog.all_topics()
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for row in rows:
        print(f"{row['name']:<24} p={row['partitions']:<3} rf={row['replicas']} {row['config']}")
    return 0
