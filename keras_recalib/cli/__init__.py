"""The `keras-recalib` command line: one module per command.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and
imports neither TensorFlow nor Keras at module level, so that `--help` and usage errors answer
at once; TensorFlow starts (quietly, see `_common.start_tensorflow`) only when a command runs.
The console script (`keras_recalib_launcher`) builds the parser before the package's
`__init__` has run, so at module level a command module imports submodules only
(`from keras_recalib._table import format_table`), never names that `__init__` defines.

Errors the user can fix (a missing file, a bad option) end with a one-line message on stderr
and exit status 2, never a traceback; `--debug` shows the traceback of unexpected errors.
"""

import argparse
import importlib
import sys

from keras_recalib.cli._common import CommandError, start_tensorflow

__all__ = ["COMMANDS", "CommandError", "build_parser", "main", "parse_args", "run"]

# Command name -> module; the order is the order of `--help`.
COMMANDS = {
    "demo": "keras_recalib.cli.demo",
    "export": "keras_recalib.cli.export",
    "inspect": "keras_recalib.cli.inspect",
    "zoo": "keras_recalib.cli.zoo",
}

PROG = "keras-recalib"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(prog=PROG, description="CNN recalibration modules for Keras 3.")
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def parse_args(argv=None):
    """The parsed arguments; `--help` and usage errors exit here (argparse's SystemExit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        parser.exit(2)
    return args


def run(args, prepare=None):
    """Runs the parsed command and returns its exit status.

    Args:
        args: the result of `parse_args`.
        prepare: called first, inside the same error handling (the console script passes the
            package import it deferred).
    """
    try:
        start_tensorflow(prepare)
        status = importlib.import_module(COMMANDS[args.command]).run(args)
        return 0 if status is None else status
    except CommandError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        text = str(error).strip()
        first = text.splitlines()[0] if text else ""
        print(
            f"{PROG} {args.command}: error: {type(error).__name__}: {first} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def main(argv=None):
    """`keras-recalib ARGS...`; returns the exit status (usage errors exit through argparse)."""
    return run(parse_args(argv))
