"""What the command modules share: the one-line error, progress messages, argument types, model
and input loading, output-path checks, and TensorFlow's quiet start.

Nothing here imports TensorFlow or Keras at module level: the parser is built from the command
modules, which import this one, and `--help` must not pay for TensorFlow.
"""

import argparse
import contextlib
import os
import pathlib
import sys
import tempfile

import numpy as np


class CommandError(Exception):
    """An error the user can fix: one line on stderr and exit status 2, no traceback."""


def say(message):
    """A progress message, on stderr so that stdout holds only the result."""
    print(message, file=sys.stderr, flush=True)


def first_line(error):
    """The first non-empty line of an exception's text, or its type when it has none."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


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


# --- TensorFlow's start ---------------------------------------------------------------------------

# Set before anything imports TensorFlow: its C++ logging reads the variable once, at import.
TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lines TensorFlow writes to the process's stderr at import and at the first device query on a
# machine without a GPU, whatever TF_CPP_MIN_LOG_LEVEL says (they come before absl's logging is
# initialised, or at ERROR level): noise for a command-line user, not errors.
_NATIVE_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning",
)


@contextlib.contextmanager
def native_stderr_without_noise(noise=_NATIVE_NOISE):
    """Captures what native code writes to file descriptor 2 and passes on every line except
    the known noise. Python's own `sys.stderr` writes are captured and passed on too."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (an embedded interpreter): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not any(marker in line for marker in noise)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def start_tensorflow(prepare=None):
    """Imports TensorFlow (and runs `prepare`, the deferred package import of the console
    script) with its native start-up noise filtered, unless the user set
    TF_CPP_MIN_LOG_LEVEL, in which case TensorFlow logs as they asked."""
    if TF_LOG_LEVEL_FROM_USER:
        if prepare is not None:
            prepare()
        return
    with native_stderr_without_noise():
        if prepare is not None:
            prepare()
        import tensorflow as tf

        # The CUDA probe ("failed call to cuInit" on CPU machines) runs at the first device
        # query; making that query here keeps its message inside the filter.
        tf.config.list_physical_devices()
    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; a missing one only means more output
        pass


# --- files --------------------------------------------------------------------------------------


def load_model(path):
    """A .keras model with the package's layers, or a CommandError that says what is wrong."""
    import keras_recalib

    try:
        return keras_recalib.load_model(path)
    except Exception as error:
        # keras_recalib.load_model's own messages start with the path and end with a
        # "Received: filepath=..." that repeats it; Keras' messages get the path in front.
        message = first_line(error).split(" Received: ")[0]
        if str(path) not in message:
            message = f"cannot load {path} as a Keras model: {message}"
        raise CommandError(message) from None


def single_input_shape(model, command):
    """The model's one input shape without the batch axis; refuses multi-input models."""
    if len(model.inputs) != 1:
        raise CommandError(
            f"{command} works on single-input models; this one has {len(model.inputs)} inputs"
        )
    return tuple(model.inputs[0].shape[1:])


def load_inputs(source, input_shape, option, limit=512):
    """Up to `limit` input samples from a .npz file (array `x`, `inputs` or the first array) or
    a folder of images (float pixels 0-255, resized to `input_shape`).

    `option` names the command-line option the path came from, for the messages.
    """
    path = pathlib.Path(source)
    if not path.exists():
        raise CommandError(f"{option} {path}: no such file or folder")
    if path.is_file():
        data = _load_npz(path, option)
    else:
        data = _load_image_folder(path, input_shape, option)
    if data.ndim < 2 or len(data) == 0:
        raise CommandError(f"{option} {path}: no samples found")
    return data[:limit]


def _load_npz(path, option):
    try:
        with np.load(path) as archive:
            names = list(archive.files)
            key = next((k for k in ("x", "inputs") if k in names), names[0] if names else None)
            if key is None:
                raise CommandError(f"{option} {path}: the .npz file holds no arrays")
            return np.asarray(archive[key], np.float32)
    except CommandError:
        raise
    except Exception as error:
        raise CommandError(
            f"{option} {path}: not a readable .npz file ({first_line(error)})"
        ) from None


def _load_image_folder(path, input_shape, option):
    import keras

    if input_shape is None or None in input_shape[:2]:
        raise CommandError(
            f"{option} {path}: an image folder needs a known input size, and the model's "
            "input is dynamic: pass --input-shape H,W,C"
        )
    try:
        dataset = keras.utils.image_dataset_from_directory(
            path,
            labels=None,
            image_size=tuple(input_shape[:2]),
            color_mode={1: "grayscale", 3: "rgb", 4: "rgba"}.get(input_shape[2], "rgb"),
            batch_size=64,
            shuffle=False,
            verbose=False,
        )
        return np.concatenate([np.asarray(batch) for batch in dataset], axis=0)
    except Exception as error:
        raise CommandError(f"{option} {path}: cannot read images ({first_line(error)})") from None


# Argparse types for paths: a wrong path is a usage error, found before TensorFlow starts.


def existing_file(name):
    """An argparse `type` for an input file that must exist."""

    def parse(text):
        path = pathlib.Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
        if not path.exists():
            raise argparse.ArgumentTypeError(f"no such file: {text}")
        return text

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def existing_path(name):
    """An argparse `type` for an input file or folder that must exist."""

    def parse(text):
        if not pathlib.Path(text).exists():
            raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
        return text

    parse.__name__ = name
    return parse


def output_file(name):
    """An argparse `type` for a file to write: its folder must exist and it must not be one.

    The library's writers create missing folders; on the command line a typo in a path
    (`/nonexistent_dir/x.tflite`) should be refused, not create folders at the root of a disk.
    """

    def parse(text):
        path = pathlib.Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
        _check_parent(path)
        return text

    parse.__name__ = name
    return parse


def output_folder(name):
    """An argparse `type` for a folder to write: its parent must exist and it must not be a
    file."""

    def parse(text):
        path = pathlib.Path(text)
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
        _check_parent(path)
        return text

    parse.__name__ = name
    return parse


def _check_parent(path):
    parent = path.absolute().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"the folder {parent} does not exist (create it first): {path}"
        )


def prepare_output_folder(path, overwrite, option="--out", default_prefix="keras_recalib"):
    """A writable output folder: a new time-stamped one under the current folder when `path`
    is None; an existing non-empty one only with `overwrite`."""
    if path is None:
        import datetime

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = pathlib.Path.cwd() / f"{default_prefix}_{stamp}"
    path = pathlib.Path(path)
    try:
        output_folder(option)(str(path))
    except argparse.ArgumentTypeError as error:
        raise CommandError(f"{option}: {error}") from None
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
