"""Command line: ``python -m lowbit demo`` (the main job) and ``python -m lowbit info``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowbit", description="lowbit: fast, exact CPU quantization")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the detected CPU features and the kernel each op uses")
    demo = sub.add_parser(
        "demo",
        help="the main job: quantize real weights, the digits CNN and MiniLM; print reports, save plots",
        description="Quantizes all-MiniLM-L6-v2's weights every way lowbit can (error, speed vs NumPy and "
        "PyTorch), trains and statically quantizes the digits CNN, dynamically quantizes MiniLM, and "
        "prints a QuantReport for each model; plots and CSV tables go to --out. About a minute.",
    )
    demo.add_argument("--threads", type=int, default=None,
                      help="threads for lowbit and torch alike (default: all cores)")
    demo.add_argument("--out", default="lowbit-demo-output",
                      help="folder for the plots and tables (default: ./lowbit-demo-output)")
    demo.add_argument("--sections", default="weights,cnn,minilm",
                      help="comma-separated sections to run, in order (default: weights,cnn,minilm)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    import lowbit

    if args.command == "info":
        print(json.dumps(lowbit.cpu_info(), indent=2))
        return 0
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        lowbit.set_num_threads(args.threads)
        if args.command == "demo":
            try:
                import torch

                torch.set_num_threads(args.threads)  # same threads for both sides of every timing
            except ImportError:
                pass
    from .demo import SECTIONS, run_demo

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad or not sections:
        parser.error(f"--sections: unknown {bad}; choose from {', '.join(SECTIONS)}")
    run_demo(args.out, sections, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
