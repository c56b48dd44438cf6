"""``tfs-gateway check-config FILE``: the validation that ``serve`` and a SIGHUP reload run
(enumerated settings, ranges, label files), with nothing started and TF Serving not contacted,
so an operator can check a file before sending SIGHUP."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.config import ConfigError, load_config


def check_config(args: argparse.Namespace) -> int:
    """0 and a summary when the file (with ``TFS_GATEWAY_*``, as serve reads it) is valid; else
    the error and 2, the exit status serve gives a bad config."""
    try:
        config = load_config(args.file)
    except ConfigError as error:
        print(f"tfs-gateway: config: {error}", file=sys.stderr)
        return 2
    api = "REST" if config.upstream.startswith(("http://", "https://")) else "gRPC"
    print(f"{args.file}: valid")
    print(f"upstream: {config.upstream} ({api})")
    print(f"models: {', '.join(m.name for m in config.models) or 'none'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "check-config",
        help="validate a config file (labels included) without starting anything",
        description=__doc__,
    )
    parser.add_argument("file", type=Path, help="TOML config file")
    parser.set_defaults(run=check_config)
