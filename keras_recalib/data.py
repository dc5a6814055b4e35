"""A deterministic, procedurally generated texture-style dataset for the demo (no download).

SRM recalibrates channels from their style (mean and standard deviation), so the demo uses a
task where the class is a *style*, not a shape: every image is band-pass filtered noise with a
random orientation (the content, drawn from the same distribution for every class), and the
class decides the texture's spatial frequency band and the per-channel contrast profile. Every
image also gets a random per-channel brightness offset and a global contrast jitter, so neither
the mean colour nor the overall contrast alone gives the class away.
"""

import numpy as np

__all__ = ["CLASS_NAMES", "style_textures"]

# (frequency band, contrast profile) per class; bands in cycles per image width.
_BANDS = {"coarse": (1.5, 4.0), "fine": (6.0, 12.0)}
_PROFILES = {
    "warm": (1.0, 0.55, 0.3),
    "cool": (0.3, 0.55, 1.0),
    "grey": (0.7, 0.7, 0.7),
}
CLASS_NAMES = tuple(f"{band}-{profile}" for band in _BANDS for profile in _PROFILES)


def style_textures(num_samples, image_size=32, seed=0):
    """Images and labels of the texture-style task.

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
