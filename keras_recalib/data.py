"""The demo's datasets, made on the spot without downloads.

- `texture_patches` (the demo's default task): texture recognition on small patches of real
  photographs, the SRM paper's texture experiment (DTD) in miniature. The photographs are the
  texture images that ship inside scikit-image's wheel (`skimage/data/brick.png`, `grass.png`,
  `gravel.png`; CC0, see `TEXTURE_SOURCES`); nothing is fetched from the network. Training and
  held-out patches come from disjoint regions of every photograph, and each patch gets the
  photometric variation of a real camera (exposure, white balance, tone curve, contrast, sensor
  noise), drawn from the same distributions for every class and both splits.
- `style_textures`: a procedurally generated task where the class is a per-channel style (kept
  as the demo's second task, `--task style_textures`).
"""

import importlib.util
import pathlib

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "TEXTURE_CLASSES",
    "TEXTURE_SOURCES",
    "camera_style",
    "style_textures",
    "texture_patches",
]

# The photographs (512 x 512 greyscale) and where scikit-image says they come from (the
# docstrings of `skimage.data.brick`, `grass`, `gravel`); all three are CC0.
TEXTURE_CLASSES = ("brick", "grass", "gravel")
TEXTURE_SOURCES = {
    "brick": "CC0Textures 'Bricks25' (CC0), perspective-corrected, greyscale, via scikit-image",
    "grass": "DeviantArt linolafett 'Grass 01' (CC0), 512x512 crop, greyscale, via scikit-image",
    "gravel": "CC0Textures 'Gravel04' (CC0), rescaled, 512x512 crop, greyscale, via scikit-image",
}

# Held-out tiles on a 4 x 4 grid, one per row and one per column, so that the held-out regions
# sample every part of a photograph (its lighting gradients, its rarer details).
_GRID = 4
_HELD_OUT_COLUMNS = (1, 3, 0, 2)

# Camera variation, as ranges of log-uniform (or uniform, for noise) draws per patch.
_GAMMA = (0.6, 1.6)  # tone curve exponent
_CONTRAST = (0.5, 1.6)  # slope around mid grey
_EXPOSURE = (0.6, 1.5)  # overall gain
_WHITE_BALANCE = (0.7, 1.4)  # red and blue gains relative to green
_NOISE = (0.0, 0.03)  # Gaussian sensor noise, standard deviation on the [0, 1] scale


def _skimage_data_folder():
    # Found without importing scikit-image: only its data files are used.
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The texture task reads photographs shipped with scikit-image; install it "
            '(pip install "keras_recalib[demo]" or pip install scikit-image).'
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "data"


def _photograph(name):
    import tensorflow as tf

    path = _skimage_data_folder() / f"{name}.png"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this scikit-image installation lacks the texture photograph "
            f"{name!r}"
        )
    pixels = tf.io.decode_png(path.read_bytes(), channels=1).numpy()[..., 0]
    return pixels.astype(np.float32) / 255.0


def held_out_mask(size):
    """The held-out region of a `size` x `size` photograph: True inside the held-out tiles."""
    mask = np.zeros((size, size), bool)
    tile = size // _GRID
    for row, column in enumerate(_HELD_OUT_COLUMNS):
        mask[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile] = True
    return mask


def _patch_corners(inside, patch_size, count, rng):
    """Top-left corners of `count` random windows that lie entirely where `inside` is True."""
    outside = np.pad((~inside).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    p = patch_size
    hits = outside[p:, p:] - outside[:-p, p:] - outside[p:, :-p] + outside[:-p, :-p]
    corners = np.argwhere(hits == 0)
    return corners[rng.integers(0, len(corners), count)]


def camera_style(patches, rng):
    """Greyscale patches in [0, 1] -> RGB images in [0, 255] as a random camera would take them.

    Per patch: a tone curve (`x ** gamma`), a contrast change around mid grey, an exposure gain,
    a white balance (red and blue gains relative to green), Gaussian sensor noise, then clipping.
    The draws do not depend on the patch's class.

    Args:
        patches: float array `(n, height, width)` with values in [0, 1].
        rng: a `numpy.random.Generator`.

    Returns:
        float32 array `(n, height, width, 3)` with values in [0, 255].
    """
    n = len(patches)

    def log_uniform(bounds, shape=()):
        return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), (n, *shape)))

    gamma = log_uniform(_GAMMA)[:, None, None]
    contrast = log_uniform(_CONTRAST)[:, None, None]
    exposure = log_uniform(_EXPOSURE)[:, None, None, None]
    balance = log_uniform(_WHITE_BALANCE, (3,))
    balance[:, 1] = 1.0
    noise = rng.uniform(*_NOISE, n)[:, None, None, None]
    x = 0.5 + contrast * (patches**gamma - 0.5)
    x = x[..., None] * exposure * balance[:, None, None, :]
    x = x + noise * rng.normal(size=x.shape)
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.float32)


def texture_patches(
    train_per_class=640,
    held_out_per_class=300,
    patch_size=16,
    seed=0,
    classes=TEXTURE_CLASSES,
):
    """Texture recognition on patches of real photographs, with a camera's photometric variation.

    Every photograph (512 x 512, see `TEXTURE_SOURCES`) is cut into a 4 x 4 grid of tiles; four
    tiles, one in each row and column, are held out. Training patches lie entirely outside them,
    held-out patches entirely inside, so no pixel is shared between the splits. Each patch then
    goes through `camera_style`.

    Args:
        train_per_class: int, training patches per photograph. Defaults to `640`.
        held_out_per_class: int, held-out patches per photograph. Defaults to `300`.
        patch_size: int, height and width in pixels, 4 to 128. Defaults to `16`.
        seed: int; the dataset is a pure function of the arguments. Defaults to `0`.
        classes: names from `TEXTURE_CLASSES`. Defaults to all of them.

    Returns:
        `((x_train, y_train), (x_held_out, y_held_out), class_names)`: images float32
        `(n, patch_size, patch_size, 3)` in [0, 255], labels int32, both splits shuffled and
        balanced.
    """
    for name, value, low in (
        ("train_per_class", train_per_class, 1),
        ("held_out_per_class", held_out_per_class, 1),
        ("patch_size", patch_size, 4),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}"
            )
    if patch_size > 512 // _GRID:
        raise ValueError(
            f"Argument `patch_size` must fit in a held-out tile ({512 // _GRID} pixels). "
            f"Received: patch_size={patch_size}"
        )
    classes = tuple(classes)
    unknown = [c for c in classes if c not in TEXTURE_CLASSES]
    if unknown or len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(
            "Argument `classes` must name at least two different photographs of "
            f"{', '.join(TEXTURE_CLASSES)}. Received: classes={classes!r}"
        )
    rng = np.random.default_rng(seed)
    splits = {"train": ([], []), "held_out": ([], [])}
    for label, name in enumerate(classes):
        photograph = _photograph(name)
        held_out = held_out_mask(photograph.shape[0])
        for split, inside, count in (
            ("train", ~held_out, train_per_class),
            ("held_out", held_out, held_out_per_class),
        ):
            corners = _patch_corners(inside, patch_size, count, rng)
            patches = np.stack(
                [photograph[r : r + patch_size, c : c + patch_size] for r, c in corners]
            )
            splits[split][0].append(camera_style(patches, rng))
            splits[split][1].append(np.full(count, label, np.int32))
    result = []
    for split in ("train", "held_out"):
        x, y = (np.concatenate(parts) for parts in splits[split])
        order = rng.permutation(len(x))
        result.append((x[order], y[order]))
    return result[0], result[1], list(classes)


# --- style_textures: the procedurally generated task -------------------------------------------

# (frequency band, contrast profile) per class; bands in cycles per image width.
_BANDS = {"coarse": (1.5, 4.0), "fine": (6.0, 12.0)}
_PROFILES = {
    "warm": (1.0, 0.55, 0.3),
    "cool": (0.3, 0.55, 1.0),
    "grey": (0.7, 0.7, 0.7),
}
CLASS_NAMES = tuple(f"{band}-{profile}" for band in _BANDS for profile in _PROFILES)


def style_textures(num_samples, image_size=32, seed=0):
    """Images and labels of the procedurally generated texture-style task.

    Every image is band-pass filtered noise with a random orientation (the content, drawn from
    the same distribution for every class); the class decides the texture's spatial frequency
    band and the per-channel contrast profile. A random per-channel brightness offset and a
    global contrast jitter make the mean colour and the overall contrast alone useless: the
    class is a *style*, which is what SRM pools, so this task favours SRM by construction (the
    demo's default task, `texture_patches`, does not).

    Args:
        num_samples: number of images.
        image_size: height and width in pixels.
        seed: the dataset is a pure function of (num_samples, image_size, seed).

    Returns:
        `(images, labels)`: float32 `(num_samples, image_size, image_size, 3)` with values in
        [0, 255], and int32 labels in `[0, len(CLASS_NAMES))`, balanced.
    """
    if int(num_samples) < 1 or int(image_size) < 4:
        raise ValueError(
            "style_textures needs num_samples >= 1 and image_size >= 4. "
            f"Received: num_samples={num_samples}, image_size={image_size}"
        )
    rng = np.random.default_rng(seed)
    n, size = int(num_samples), int(image_size)
    labels = np.arange(n) % len(CLASS_NAMES)
    rng.shuffle(labels)
    band_index = labels // len(_PROFILES)
    profile_index = labels % len(_PROFILES)

    # Content: white noise filtered to the class's band, with a random dominant orientation.
    freq = np.fft.fftfreq(size) * size
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(fy, fx)
    angle = np.arctan2(fy, fx)
    bands = np.array(list(_BANDS.values()))[band_index]  # (n, 2)
    orientation = rng.uniform(0, np.pi, n)
    ring = (radius[None] >= bands[:, :1, None]) & (radius[None] <= bands[:, 1:, None])
    directional = np.cos(angle[None] - orientation[:, None, None]) ** 2
    spectrum = np.fft.fft2(rng.normal(size=(n, size, size)))
    base = np.real(np.fft.ifft2(spectrum * ring * (0.25 + directional)))
    base /= base.std(axis=(1, 2), keepdims=True) + 1e-8

    # Style: per-channel contrast profile, blended with a little channel-specific noise.
    profiles = np.array(list(_PROFILES.values()))[profile_index]  # (n, 3)
    own_noise = rng.normal(size=(n, size, size, 3)) * 0.25
    textures = base[..., None] + own_noise
    contrast = profiles * rng.uniform(0.8, 1.25, (n, 1))
    offset = rng.uniform(0.35, 0.65, (n, 3))
    images = offset[:, None, None, :] + 0.18 * contrast[:, None, None, :] * textures
    images = np.clip(images, 0.0, 1.0) * 255.0
    return images.astype("float32"), labels.astype("int32")
