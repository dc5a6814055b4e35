"""Placeholder for the `keras-recalib` command-line package on the demo branch.

The CLI branch's `keras_recalib/cli/__init__.py` replaces this file at merge. Until then this
package shadows the old single-module CLI, `keras_recalib/cli.py`; running that module's code
here keeps its commands (export, zoo) and `main` working, with the new `demo` command module.
"""

import pathlib as _pathlib

from keras_recalib.cli import _common

_old_cli = _pathlib.Path(__file__).resolve().parent.with_suffix(".py")
exec(compile(_old_cli.read_text(), str(_old_cli), "exec"))  # noqa: S102
# One error class for the old commands and the new one.
CommandError = _common.CommandError
COMMAND_MODULES = [m for m in COMMAND_MODULES if m != "keras_recalib.demo"]  # noqa: F821


def _register_demo():
    from keras_recalib.cli import demo

    register_command("demo", demo.HELP, demo.add_arguments, demo.run)  # noqa: F821


_register_demo()
