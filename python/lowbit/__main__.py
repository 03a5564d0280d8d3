"""Command line: ``python -m lowbit demo`` (the main job) and ``python -m lowbit info``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowbit", description="lowbit: fast, exact CPU quantization")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the detected CPU features and the kernel each op uses")
    demo = sub.add_parser("demo", help="quantize real weights (all-MiniLM-L6-v2), print error and speed")
    demo.add_argument("--threads", type=int, default=None, help="number of threads (default: all cores)")
    args = parser.parse_args(argv)

    import lowbit

    if args.command == "info":
        print(json.dumps(lowbit.cpu_info(), indent=2))
        return 0
    if args.threads is not None:
        lowbit.set_num_threads(args.threads)
    from .demo import run_weights_demo

    run_weights_demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
