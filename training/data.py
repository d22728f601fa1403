"""Reading a class-per-folder data set, the validation split, class weights and tf.data pipelines."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import unicodedata
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from training.preprocess import IMAGE_SUFFIXES, ImageDecodeError, load_image

IMAGE_NAMES = ", ".join(sorted(IMAGE_SUFFIXES))


class DataError(ValueError):
    """The photos given, or an option about them, cannot work: a mistake for the user to fix, not a
    bug. The command-line tools print its message (`error: ...`) instead of a traceback."""


class UndecodablePhotos(DataError, ImageDecodeError):
    """Photos of a data set that cannot be decoded; an ImageDecodeError too, for callers that catch that."""


@dataclass
class Dataset:
    """Photos of a `<class>/<file>` folder: relative paths, integer labels and the class slugs."""

    root: Path
    files: list[str]
    labels: np.ndarray
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # in class folders: files not named as photos, folders

    def counts(self) -> dict[str, int]:
        return counts_per_class(self.labels, self.classes)

    def skipped_note(self) -> str:
        """A line naming the files left out as not photos by their names, and the folders inside
        class folders (empty if none)."""
        if not self.skipped:
            return ""
        more = len(self.skipped) - 5
        shown = ", ".join(self.skipped[:5]) + (f" and {more} more" if more > 0 else "")
        return (f"skipped {len(self.skipped)} folders inside class folders, or files whose names are not "
                f"a photo's ({IMAGE_NAMES}): {shown}")

    def digest(self) -> str:
        """SHA-256 of which photos the set holds, by content, and under which class: two evaluations
        with one digest read the same photos with the same labels, whatever the files are called."""
        pairs = sorted(f"{self.classes[label]}/{hashlib.sha256((self.root / f).read_bytes()).hexdigest()}"
                       for f, label in zip(self.files, self.labels))
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def counts_per_class(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    """{class slug: how many of `labels` (indices into `classes`) it has}, every class listed."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return dict(zip(classes, counts.tolist()))


# Characters that change how the text around them reads: line and paragraph breaks, direction overrides.
NOT_IN_NAMES = set("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_text(name: str) -> bool:
    """Whether a file name is text: no bytes that were not UTF-8 (which Python keeps as lone
    surrogates), no control characters, no line breaks or direction overrides (zero-width joiners,
    which scripts need, are text)."""
    return not any(unicodedata.category(char) in ("Cs", "Cc") or char in NOT_IN_NAMES for char in name)


def nfc(name: str) -> str:
    """A name with its accents written one way (composed): macOS may write "crème" as "cre" and a
    combining grave, which reads the same and compares unequal."""
    return unicodedata.normalize("NFC", name)


def discover(root: str | Path, classes: list[str] | None = None) -> Dataset:
    """List the photos under `root/<class>/`, classes sorted by name unless given.

    Passing `classes` (a model's labels) maps folders onto that model's indices; a folder the model
    does not know is an error, since its photos could never be right. So is a folder without photos
    (empty, or only hidden files such as .DS_Store): a class with no photos cannot be learned.
    Hidden files (names starting with '.', such as macOS `._*` AppleDouble files) are skipped; other
    files whose names are not a photo's (README.txt, Thumbs.db), and folders inside class folders
    (whose photos are not read), are skipped and listed in `skipped`, for the tools to say so.
    Without `classes` there must be two folders or more: one class leaves nothing to tell apart (and
    TensorFlow would fail deep inside training, with a message about indices). Class names are
    compared, and recorded, with their accents composed (`nfc`).
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder of <class>/ folders" if root.exists() else "not found"
        raise FileNotFoundError(f"data folder {what}: {root}")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unreadable = [name for name in folders if not is_text(name)]
    if unreadable:  # (bytes that are not UTF-8, as old zip files name folders: no class name to keep)
        raise DataError(f"class folder names that are not text: {', '.join(map(ascii, unreadable))}; "
                        "rename them")
    if classes is None:
        if len(folders) < 2:
            raise DataError(f"{root} has {len(folders)} class folder(s) {folders}: a classifier needs "
                            "at least two <class>/ folders, each holding the photos of its class")
        classes = sorted({nfc(name) for name in folders})
        if len(classes) < len(folders):
            raise DataError(f"{root} has class folders whose names differ only in how their accents are "
                            "written (composed or not, as macOS writes them): merge them")
    index = {nfc(name): i for i, name in enumerate(classes)}
    unknown = sorted(name for name in folders if nfc(name) not in index)
    if unknown:
        raise DataError(f"folders {unknown} are not classes of the model ({classes})")
    files, labels, empty, skipped = [], [], [], []
    for name in folders:
        entries = [path for path in sorted((root / name).iterdir()) if not path.name.startswith(".")]
        photos = [path.name for path in entries if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [f"{name}/{path.name}{'/' if path.is_dir() else ''}" for path in entries
                    if path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES]
        if not photos:
            empty.append(str(root / name))
        files += [f"{name}/{photo}" for photo in photos]
        labels += [index[nfc(name)]] * len(photos)
    if empty:
        raise DataError(f"class folders without photos: {empty}; add photos or remove the folders (a "
                        "class's photos go directly in its folder, <class>/<file>: folders inside it are "
                        "not read)")
    if not files:
        raise DataError(f"no images found under {root}/<class>/")
    return Dataset(root=root, files=files, labels=np.array(labels, dtype=np.int64), classes=classes,
                   skipped=skipped)


def split(data: Dataset, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train/validation indices carved from one training folder.

    Every class with photos gets at least one photo on each side, so a class needs two; a class
    with a single photo is an error that names it. So is a fraction that leaves training fewer
    photos than classes (checked here: scikit-learn's own message speaks of its arguments).
    """
    indices = np.arange(len(data.files))
    if val_fraction <= 0:
        return indices, indices[:0]
    single = [name for name, n in data.counts().items() if n == 1]
    if single:
        raise DataError(f"classes with a single photo: {single}; a class needs at least two, "
                         "one for training and one for validation")
    n, k = len(indices), len(data.classes)
    n_val = max(int(round(n * val_fraction)), k)
    if n_val > n - k:
        raise DataError(f"a validation fraction of {val_fraction} takes {n_val} of the {n} photos, leaving "
                        f"fewer than one per class ({k} classes) for training; lower the validation "
                        "fraction (--val-fraction) or add photos")
    train_idx, val_idx = train_test_split(
        indices, test_size=n_val, stratify=data.labels, random_state=seed
    )
    # Rounding leaves a class of a few photos on one side only: move one of them across. Classes
    # that already have both sides are untouched, so larger data sets keep the split they had.
    in_val = np.isin(indices, val_idx)
    rng = np.random.default_rng(seed)
    for label in np.unique(data.labels):
        members = indices[data.labels == label]
        for side in (True, False):
            if not (in_val[members] == side).any():
                in_val[rng.choice(members)] = side
    return indices[~in_val], indices[in_val]


def split_as_before(data: Dataset, val_files: list[str] | None, val_fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The validation split a model was trained with: its `val_files` that the folder still holds.

    Photos added to the folder since go to training. Carving the split afresh would move photos
    the model trained on into validation (ten new photos moved three quarters of it), and early
    stopping would then measure on photos the model has learnt. Folders written before
    `val_files` was recorded are split as `split` does.
    """
    if val_files is None:
        return split(data, val_fraction, seed)
    if not val_files:
        raise DataError("the model was trained without a validation split: a retrain has nothing to "
                        "stop early on")
    indices = np.arange(len(data.files))
    in_val = np.isin(np.array([nfc(f) for f in data.files], dtype=str),  # (however macOS wrote accents)
                     np.array([nfc(f) for f in val_files], dtype=str))
    if not in_val.any():
        raise DataError(f"none of the {len(val_files)} validation photos the model was trained with "
                        f"(e.g. {val_files[0]}) are in {data.root}: is it the folder it was trained on?")
    return indices[~in_val], indices[in_val]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights, n / (k * count), so every class carries the same total weight."""
    counts = np.bincount(labels, minlength=num_classes)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def pixel_array(rows: int, size: int, folder: str | Path | None = None) -> np.ndarray:
    """An uninitialised uint8 array (rows, size, size, 3) for decoded photos.

    With `folder`, a memory-mapped `pixels.npy` file there instead of memory: a data set larger
    than memory still trains (CIFAR-10's 60,000 photos at 224 px are 9 GB), and one that fits is
    read from the page cache, as fast as memory. The caller owns the folder and removes it.
    """
    shape = (rows, size, size, 3)
    if folder is None:
        return np.empty(shape, dtype=np.uint8)
    return np.lib.format.open_memmap(Path(folder) / "pixels.npy", mode="w+", dtype=np.uint8, shape=shape)


def load_pixels(data: Dataset, size: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Decode the photos with the shared preprocessing into one uint8 array (N, size, size, 3):
    `out` (for example a `pixel_array` on disk) or a new array in memory.

    A photo that cannot be decoded is not skipped (nothing is silently left out of training): all
    are tried, then one ImageDecodeError lists every bad file, to fix or remove.
    """
    pixels = pixel_array(len(data.files), size) if out is None else out
    if pixels.shape != (len(data.files), size, size, 3):
        raise ValueError(f"out has shape {pixels.shape}, not {(len(data.files), size, size, 3)}")
    bad = []
    for row, file in enumerate(tqdm(data.files, desc=f"decode {data.root.name}", unit="img")):
        try:
            pixels[row] = load_image(data.root / file, size)
        except ImageDecodeError as exc:
            bad.append(f"{data.root / file}: {exc}")
    raise_undecodable(bad)
    return pixels


PIXELS_PREFIX = "cakesite-pixels-"  # the temporary folders of `decoded`


@contextmanager
def decoded(data: Dataset, size: int, extra: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The photos of `data` decoded (`load_pixels`), then the rows of `extra` (already decoded), in
    one `pixel_array` file in a temporary folder (TMPDIR) that is removed on leaving the block (by
    `remove_leftover_pixels` if the process was killed first)."""
    extra = np.zeros((0, size, size, 3), np.uint8) if extra is None else extra
    n = len(data.files)
    with tempfile.TemporaryDirectory(prefix=PIXELS_PREFIX, ignore_cleanup_errors=True) as tmp:
        pixels = pixel_array(n + len(extra), size, tmp)
        load_pixels(data, size, out=pixels[:n])
        pixels[n:] = extra
        yield pixels


def remove_leftover_pixels() -> list[str]:
    """Remove the folders of `decoded` that processes killed mid-training left in TMPDIR (a SIGKILL
    skips the cleanup; one such folder holds every base photo decoded, some 165 MB); their names.
    A process still training loses nothing: its open file stays readable until it closes it."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(PIXELS_PREFIX + "*"):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def raise_undecodable(bad: list[str]) -> None:
    """Raise one UndecodablePhotos (an ImageDecodeError) listing every `path: reason` in `bad`, if any."""
    if bad:
        raise UndecodablePhotos(f"{len(bad)} photos cannot be decoded (fix or remove them):\n"
                               + "\n".join(bad))


def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Honest augmentation of one photo: what changes between two photos of the same cake.

    Geometry is one affine warp (reflect-padded): horizontal and vertical flips (cakes seen from
    above have no up or down), rotation up to 20 degrees, a random crop keeping 60-100% of the
    side (zoom in) and a small shift. Then lighting and colour jitter, hue included, because the
    same cake is made in several colours (pandan-green or white serabi, red or green klepon).
    Every draw is stateless, keyed on `seed`, so a run is reproducible with parallel maps.
    """
    def uniform(i: int, low: float, high: float) -> tf.Tensor:
        return tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, i),
                                           low, high)

    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    flip_x = tf.where(uniform(0, 0.0, 1.0) < 0.5, -1.0, 1.0)
    flip_y = tf.where(uniform(1, 0.0, 1.0) < 0.5, -1.0, 1.0)
    angle = uniform(2, -1.0, 1.0) * (20.0 * np.pi / 180.0)
    scale = uniform(3, 0.6, 1.0)  # the side of the crop, as a fraction of the photo
    room = (1.0 - scale) / 2.0 + 0.05
    shift_x = uniform(4, -1.0, 1.0) * room * width
    shift_y = uniform(5, -1.0, 1.0) * room * height
    # The warp maps each output pixel to an input pixel: input = centre + shift + M (out - centre).
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    m00, m01, m10, m11 = cos * flip_x, -sin * flip_y, sin * flip_x, cos * flip_y
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    transform = tf.stack([m00, m01, cx + shift_x - m00 * cx - m01 * cy,
                          m10, m11, cy + shift_y - m10 * cx - m11 * cy, 0.0, 0.0])
    image = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None],
        output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT",
    )[0]

    def key(i: int) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(seed, i)

    image = image / 255.0
    image = tf.image.stateless_random_brightness(image, 0.15, key(6))
    image = tf.image.stateless_random_contrast(image, 0.75, 1.25, key(7))
    image = tf.clip_by_value(image, 0.0, 1.0)
    image = tf.image.stateless_random_saturation(image, 0.6, 1.4, key(8))
    image = tf.image.stateless_random_hue(image, 0.08, key(9))
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def pipeline(
    pixels: np.ndarray, labels: np.ndarray, batch_size: int, *, training: bool = False, seed: int = 0,
    indices: np.ndarray | None = None,
) -> tf.data.Dataset:
    """A tf.data pipeline over decoded pixels: shuffled and augmented when training.

    It takes the rows `indices` of `pixels` (all rows if None; `labels` go with `indices`) and
    reads each row as it needs it, so it copies no pixels: `pixels` is the cache, in memory or a
    memory-mapped `pixel_array` file, and a data set costs its own size once, not once per copy.
    """
    indices = np.arange(len(pixels)) if indices is None else np.asarray(indices)
    if len(indices) != len(labels):
        raise ValueError(f"{len(indices)} photos but {len(labels)} labels")
    size = pixels.shape[1:]
    # TensorFlow keeps every numpy_function's callable for the life of the process: a callable that
    # held the array would keep it (a memory-mapped file, deleted or not, in a long-lived trainer
    # worker) after every run. The callable holds a weak reference; the dataset returned holds the
    # strong one, so the array lives exactly as long as the dataset (and those made from it).
    source = weakref.ref(pixels)

    def row(i: tf.Tensor) -> tf.Tensor:
        photo = tf.numpy_function(lambda j: np.asarray(source()[j]), [i], tf.uint8, stateful=False)
        return tf.ensure_shape(photo, size)

    ds = tf.data.Dataset.from_tensor_slices((indices.astype(np.int64), labels))
    if training:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
        # One fresh seed per photo per epoch, from a seeded stream: reproducible in parallel.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda item, s: (augment(tf.cast(row(item[0]), tf.float32), s), item[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(lambda i, y: (tf.cast(row(i), tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ds.pixels = pixels  # see `source`
    return ds
