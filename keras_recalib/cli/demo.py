"""`keras-recalib demo`: for now a thin wrapper over `keras_recalib.demo` (being rewritten)."""

from keras_recalib import demo as _demo

HELP = "Train SRM and plain CIFAR-style ResNets on an embedded style dataset, export, compare."


def add_arguments(parser):
    _demo.add_demo_arguments(parser)


def run(args):
    return _demo.run_demo(args)
