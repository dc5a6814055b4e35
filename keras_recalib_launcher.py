"""The `keras-recalib` console script: `--help` and usage errors without importing TensorFlow.

Importing any module of `keras_recalib` first runs the package's `__init__`, which imports Keras
(and with it TensorFlow, several seconds) so that a plain `import keras_recalib` registers the
layers with Keras' serialisation; `keras.saving.load_model` relies on that, so the package must
keep doing it. The command line needs TensorFlow only once a command runs. This launcher sits
outside the package: it creates the package's module object without executing its `__init__`,
builds the parser from `keras_recalib.cli` (whose modules import neither TensorFlow nor Keras),
and executes the package's `__init__` in that same module object just before the command runs,
so everything that runs afterwards sees the package exactly as `import keras_recalib` gives it.
"""

import importlib.util
import sys

_PACKAGE = "keras_recalib"


def main(argv=None):
    if _PACKAGE in sys.modules:  # already imported (e.g. called from Python): nothing to defer
        from keras_recalib import cli

        return cli.main(argv)
    spec = importlib.util.find_spec(_PACKAGE)
    package = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = package
    try:
        from keras_recalib import cli

        args = cli.parse_args(argv)
    except BaseException:
        # Leave no half-made package behind for a caller that goes on (a test, an interpreter).
        for name in [n for n in sys.modules if n == _PACKAGE or n.startswith(_PACKAGE + ".")]:
            del sys.modules[name]
        raise
    return cli.run(args, prepare=lambda: spec.loader.exec_module(package))


if __name__ == "__main__":
    sys.exit(main())
