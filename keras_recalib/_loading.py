"""`keras_recalib.load_model`: `keras.saving.load_model` with the layers registered and with
errors that say what is wrong with the file."""

import os
import pathlib
import zipfile

import keras


def load_model(filepath, **kwargs):
    """Loads a model saved with `model.save(...)` that contains this package's layers.

    The same as `keras.saving.load_model` after `import keras_recalib`, which registers the
    layers with Keras' serialisation; without that import Keras fails with "Could not locate
    class 'StyleRecalibration'". Called this way, the import is used and cannot be dropped as
    unused by a linter or a refactoring. Before handing the file to Keras, it checks what Keras
    reports as "File not found" for any unreadable `.keras` file: a missing, empty or non-zip
    file, or a zip archive without a model configuration.

    Args:
        filepath: str or `pathlib.Path`, a `.keras` file (or a legacy `.h5` file).
        **kwargs: passed to `keras.saving.load_model` (`custom_objects`, `compile`,
            `safe_mode`).

    Returns:
        The Keras model.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is empty, or is not a `.keras` archive (truncated, corrupted or
            another format).
    """
    filepath = os.fspath(filepath)
    # Remote paths (gs://...) go to Keras unchecked: it reads them through tf.io.gfile.
    if "://" not in filepath and filepath.endswith(".keras"):
        _check_keras_archive(pathlib.Path(filepath))
    return keras.saving.load_model(filepath, **kwargs)


def _check_keras_archive(path):
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not a .keras file (a SavedModel folder loads with "
            f"keras.layers.TFSMLayer). Received: filepath={str(path)!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}. Received: filepath={str(path)!r}")
    if path.stat().st_size == 0:
        raise ValueError(
            f"{path} is empty (0 bytes): the save that wrote it did not finish. "
            f"Received: filepath={str(path)!r}"
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a .keras file: a .keras file is a zip archive and this one is not "
            f"(truncated, corrupted, or another format). Received: filepath={str(path)!r}"
        )
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    if "config.json" not in names:
        raise ValueError(
            f"{path} is a zip archive without the config.json of a .keras file. "
            f"Received: filepath={str(path)!r}"
        )
