"""Placeholder for the `keras-recalib` command-line package on the demo branch.

The CLI branch's `keras_recalib/cli/__init__.py` replaces this file at merge; it exists here only
so that `keras_recalib.cli.demo` can be imported and tested on this branch.
"""
