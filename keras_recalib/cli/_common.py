"""Placeholder: the part of the CLI branch's `keras_recalib/cli/_common.py` that the demo command
uses, copied with the same names and behaviour; the CLI branch's file replaces this one at merge.
"""

import argparse
import pathlib


class CommandError(Exception):
    """An error the user can fix: one line on stderr and exit status 2, no traceback."""


def positive_int(name, minimum=1):
    """An argparse `type` for integers of at least `minimum`, named in the usage error."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def prepare_output_folder(path, overwrite, option="--out", default_prefix="keras_recalib"):
    """A writable output folder: a new time-stamped one under the current folder when `path`
    is None; an existing non-empty one only with `overwrite`."""
    if path is None:
        import datetime

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = pathlib.Path.cwd() / f"{default_prefix}_{stamp}"
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option}: {path} exists and is not a folder")
    if not path.absolute().parent.is_dir():
        raise CommandError(
            f"{option}: the folder {path.absolute().parent} does not exist (create it first): "
            f"{path}"
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CommandError(f"{option} {path} is not empty; pass --overwrite to write into it")
    try:
        path.mkdir(exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CommandError(f"cannot write to {option} {path}: {error.strerror or error}") from None
    return path
