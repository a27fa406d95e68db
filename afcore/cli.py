"""`afsuite`: the suite's command line. Each command group lives beside the code it drives and
contributes its sub-commands through a `register(subparsers)` function listed in COMMAND_MODULES."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add sub-commands; imported lazily so `afsuite info` stays fast.
COMMAND_MODULES = (
    "afcore.commands",
    "afcore.train_cli",
    "data_prep.cli",
    "eval.study.cli",
    "eval.reproduce.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afsuite", description="Train, align, measure and demo Avatar Forcing.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue  # that part of the suite is not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
