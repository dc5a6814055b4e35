"""The `keras-recalib` command line: one sub-command per job.

Errors the user can fix (a missing file, a bad option) end with a one-line message on stderr
and exit status 2, never a traceback.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CommandError(Exception):
    """An error worth one line to the user, not a traceback."""


# name -> (help, add_arguments(parser), run(args)); filled by register_command.
COMMANDS = {}

# Modules that define sub-commands; imported lazily so a typo in argv fails fast.
COMMAND_MODULES = [
    "keras_recalib.export_cli",
    "keras_recalib.models.cli",
    "keras_recalib.demo",
]


def register_command(name, help_text, add_arguments, run):
    COMMANDS[name] = (help_text, add_arguments, run)


def _load_commands():
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the CLI."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    _load_commands()
    parser = _Parser(prog="keras-recalib", description="CNN recalibration modules for Keras 3.")
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    run = COMMANDS[args.command][2]
    try:
        return run(args) or 0
    except CommandError as error:
        print(f"keras-recalib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-recalib: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"keras-recalib {args.command}: error: {type(error).__name__}: {first} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
