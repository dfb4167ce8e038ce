"""``tensorflow.examples.tutorials.mnist.input_data``, rebuilt on NumPy.

The MNIST tutorials of the TF1 era start with::

    from tensorflow.examples.tutorials.mnist import input_data
    mnist = input_data.read_data_sets("MNIST_data/", one_hot=True)

That module left TensorFlow with 2.0. This one keeps its API and behaviour -- ``train``,
``validation`` (the first 5000 training images) and ``test`` data sets, ``next_batch`` with
its per-epoch shuffle on NumPy's global random state, images scaled to [0, 1] as float32 rows
of 784 -- but reads the four standard idx files from the given directory instead of
downloading them. When they are missing it says where to put them.

No TensorFlow import: ``dtype`` may be a ``tf.DType`` or anything with a matching ``name``.
"""

import collections
import gzip
import os
from typing import Any, Optional, Tuple

import numpy

from tf1_ema.legacy.errors import MissingDataError

__all__ = ["DataSet", "Datasets", "read_data_sets", "MNIST_FILES", "MNIST_URL"]

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
# The mirror TF1's own input_data downloaded from.
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_NUM_CLASSES = 10

Datasets = collections.namedtuple("Datasets", ["train", "validation", "test"])


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        try:
            name = numpy.dtype(dtype).name
        except TypeError:
            name = None
    if name not in ("float32", "uint8"):
        raise TypeError("Invalid image dtype %r, expected uint8 or float32" % (dtype,))
    return name


def _read_int32(stream) -> int:
    return int(numpy.frombuffer(stream.read(4), dtype=">u4")[0])


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def extract_images(path: str) -> numpy.ndarray:
    """Reads an idx3 image file into a uint8 array of shape [count, rows, cols, 1].

    Args:
        path: a ``.gz`` or uncompressed idx3-ubyte file.

    Returns:
        The images, uint8.

    Raises:
        ValueError: the file does not start with the idx3 magic number 2051.
    """
    with _open(path) as stream:
        magic = _read_int32(stream)
        if magic != _IMAGES_MAGIC:
            raise ValueError("Invalid magic number %d in MNIST image file: %s" % (magic, path))
        count, rows, cols = (_read_int32(stream) for _ in range(3))
        data = numpy.frombuffer(stream.read(rows * cols * count), dtype=numpy.uint8)
    return data.reshape(count, rows, cols, 1)


def dense_to_one_hot(labels: numpy.ndarray, num_classes: int = _NUM_CLASSES) -> numpy.ndarray:
    """Turns class indices into one-hot rows.

    Args:
        labels: integer class ids, shape [count].
        num_classes: the width of each row.

    Returns:
        A float64 array of shape [count, num_classes] (TF1's dtype for one-hot MNIST labels).
    """
    one_hot = numpy.zeros((labels.shape[0], num_classes))
    one_hot[numpy.arange(labels.shape[0]), labels] = 1
    return one_hot


def extract_labels(path: str, one_hot: bool = False, num_classes: int = _NUM_CLASSES) -> numpy.ndarray:
    """Reads an idx1 label file into a uint8 array of shape [count], or one-hot rows.

    Args:
        path: a ``.gz`` or uncompressed idx1-ubyte file.
        one_hot: return float64 one-hot rows instead of class ids.
        num_classes: the width of the one-hot rows.

    Returns:
        The labels.

    Raises:
        ValueError: the file does not start with the idx1 magic number 2049.
    """
    with _open(path) as stream:
        magic = _read_int32(stream)
        if magic != _LABELS_MAGIC:
            raise ValueError("Invalid magic number %d in MNIST label file: %s" % (magic, path))
        count = _read_int32(stream)
        labels = numpy.frombuffer(stream.read(count), dtype=numpy.uint8)
    return dense_to_one_hot(labels, num_classes) if one_hot else labels


def _numpy_seed(seed: Optional[int]) -> Optional[int]:
    """The seed TF1's DataSet gave NumPy: derived from the graph seed when TensorFlow is loaded.

    TF1 parity: ``DataSet.__init__`` reseeds NumPy's global random state with
    ``seed1 if seed is None else seed2`` from ``get_seed(seed)``, so ``tf.set_random_seed``
    made the ``next_batch`` shuffles reproducible -- and no seed at all reseeded from entropy.
    """
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None:
        return seed
    seed1, seed2 = tf.compat.v1.get_seed(seed)
    return seed1 if seed is None else seed2


class DataSet:
    """Images and labels with TF1's ``next_batch`` epoch and shuffle behaviour.

    Args:
        images: uint8 array [count, rows, cols, depth].
        labels: array [count] or [count, classes].
        fake_data: ignore ``images``/``labels`` and serve constant fake rows.
        one_hot: with ``fake_data``, serve one-hot fake labels.
        dtype: ``uint8`` keeps raw pixels; ``float32`` (default) scales them to [0, 1].
        reshape: flatten each image to a row of rows*cols values (needs depth 1).
        seed: seed for the shuffles, combined with the graph seed as TF1 did.
    """

    def __init__(
        self,
        images: Any,
        labels: Any,
        fake_data: bool = False,
        one_hot: bool = False,
        dtype: Any = "float32",
        reshape: bool = True,
        seed: Optional[int] = None,
    ) -> None:
        dtype_name = _dtype_name(dtype)
        numpy.random.seed(_numpy_seed(seed))
        if fake_data:
            self._num_examples = 10000
            self.one_hot = one_hot
        else:
            images = numpy.asarray(images)
            labels = numpy.asarray(labels)
            if images.shape[0] != labels.shape[0]:
                raise ValueError(
                    "images.shape: %s labels.shape: %s" % (images.shape, labels.shape)
                )
            self._num_examples = images.shape[0]
            if reshape:
                if images.shape[3] != 1:
                    raise ValueError("reshape=True needs images of depth 1, got %s" % (images.shape,))
                images = images.reshape(images.shape[0], images.shape[1] * images.shape[2])
            if dtype_name == "float32":
                # TF1 parity: scale in float32 by the float64 constant 1/255.
                images = numpy.multiply(images.astype(numpy.float32), 1.0 / 255.0)
        self._images = images
        self._labels = labels
        self._epochs_completed = 0
        self._index_in_epoch = 0

    @property
    def images(self) -> numpy.ndarray:
        """The images, in the current (shuffled) order."""
        return self._images

    @property
    def labels(self) -> numpy.ndarray:
        """The labels, in the same order as ``images``."""
        return self._labels

    @property
    def num_examples(self) -> int:
        """How many examples the data set holds."""
        return self._num_examples

    @property
    def epochs_completed(self) -> int:
        """How many full passes ``next_batch`` has made."""
        return self._epochs_completed

    def next_batch(
        self, batch_size: int, fake_data: bool = False, shuffle: bool = True
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Returns the next ``batch_size`` examples.

        The order is shuffled before the first batch and again at every epoch boundary
        (when ``shuffle``); a batch that crosses the boundary joins the end of the old epoch
        with the start of the new one.

        Args:
            batch_size: number of examples.
            fake_data: serve constant fake rows.
            shuffle: shuffle the order at the start of each epoch.

        Returns:
            ``(images, labels)`` for the batch.
        """
        if fake_data:
            fake_image = [1] * 784
            fake_label = [1] + [0] * 9 if self.one_hot else 0
            return [fake_image] * batch_size, [fake_label] * batch_size
        start = self._index_in_epoch
        if self._epochs_completed == 0 and start == 0 and shuffle:
            self._shuffle()
        if start + batch_size <= self._num_examples:
            self._index_in_epoch = start + batch_size
            return self._images[start : self._index_in_epoch], self._labels[start : self._index_in_epoch]
        # The batch crosses the end of the epoch: finish this one, then start the next.
        self._epochs_completed += 1
        rest = self._num_examples - start
        images_rest = self._images[start : self._num_examples]
        labels_rest = self._labels[start : self._num_examples]
        if shuffle:
            self._shuffle()
        self._index_in_epoch = batch_size - rest
        images_new = self._images[0 : self._index_in_epoch]
        labels_new = self._labels[0 : self._index_in_epoch]
        return (
            numpy.concatenate((images_rest, images_new), axis=0),
            numpy.concatenate((labels_rest, labels_new), axis=0),
        )

    def _shuffle(self) -> None:
        order = numpy.arange(self._num_examples)
        numpy.random.shuffle(order)
        self._images = self._images[order]
        self._labels = self._labels[order]


def _find(train_dir: str, name: str) -> Optional[str]:
    """The path of ``name`` in ``train_dir``, accepting an already gunzipped copy."""
    for candidate in (name, name[: -len(".gz")]):
        path = os.path.join(train_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_data_sets(
    train_dir: str,
    fake_data: bool = False,
    one_hot: bool = False,
    dtype: Any = "float32",
    reshape: bool = True,
    validation_size: int = 5000,
    seed: Optional[int] = None,
    source_url: str = MNIST_URL,
) -> Datasets:
    """Loads MNIST from the four standard idx files in ``train_dir``.

    Args:
        train_dir: directory holding ``train-images-idx3-ubyte.gz``,
            ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
            ``t10k-labels-idx1-ubyte.gz`` (gunzipped copies work too).
        fake_data: return fake data sets without reading any file.
        one_hot: labels as float64 one-hot rows instead of class ids.
        dtype: ``float32`` (pixels scaled to [0, 1]) or ``uint8``.
        reshape: flatten images to rows of 784.
        validation_size: how many of the first training images form ``validation``.
        seed: seed for ``next_batch`` shuffles (combined with the graph seed, as in TF1).
        source_url: kept for API compatibility; only used in the missing-files message,
            nothing is downloaded.

    Returns:
        ``Datasets(train, validation, test)``.

    Raises:
        MissingDataError: some of the four files are not in ``train_dir``.
        ValueError: ``validation_size`` is not between 0 and the number of training images.
    """
    if fake_data:
        fake = lambda: DataSet([], [], fake_data=True, one_hot=one_hot, dtype=dtype, seed=seed)  # noqa: E731
        return Datasets(train=fake(), validation=fake(), test=fake())
    paths = {name: _find(train_dir, name) for name in MNIST_FILES}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        where = os.path.abspath(train_dir)
        raise MissingDataError(
            "MNIST data not found: %s %s missing from %s; tf1-ema does not download, so "
            "fetch the four files from %s and put them in that directory."
            % (", ".join(missing), "is" if len(missing) == 1 else "are", where, source_url)
        )
    train_images = extract_images(paths[TRAIN_IMAGES])
    train_labels = extract_labels(paths[TRAIN_LABELS], one_hot=one_hot)
    test_images = extract_images(paths[TEST_IMAGES])
    test_labels = extract_labels(paths[TEST_LABELS], one_hot=one_hot)
    if not 0 <= validation_size <= len(train_images):
        raise ValueError(
            "Validation size should be between 0 and %d. Received: %d."
            % (len(train_images), validation_size)
        )
    options = dict(dtype=dtype, reshape=reshape, seed=seed)
    train = DataSet(train_images[validation_size:], train_labels[validation_size:], **options)
    validation = DataSet(train_images[:validation_size], train_labels[:validation_size], **options)
    test = DataSet(test_images, test_labels, **options)
    return Datasets(train=train, validation=validation, test=test)
