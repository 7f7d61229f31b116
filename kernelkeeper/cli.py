"""The `kernelkeeper` command: one entry point, a subcommand per component."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from kernelkeeper.local import cli as local_cli

    parser = argparse.ArgumentParser(
        prog="kernelkeeper", description="Highly available Jupyter kernels on Kubernetes."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    local_cli.add_parser(sub)
    __import__("kernelkeeper.operator.cli", fromlist=["add_parser"]).add_parser(sub)
    __import__("kernelkeeper.gateway.cli", fromlist=["add_parser"]).add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
