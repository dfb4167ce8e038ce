"""tf1_ema.legacy: the Python 2 print fixer, the MNIST input_data stand-in, the tf.contrib map.

The fixer and input_data tests import no TensorFlow; the contrib tests build ops in a
private graph (the ``graph``/``session`` fixtures) and leave global state alone.
"""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TIMEOUT
from tf1_ema.legacy import input_data
from tf1_ema.legacy.errors import ContribRemovedError, LegacyError, MissingDataError
from tf1_ema.legacy.py2print import fix_print

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- py2print

# (Python 2 source, expected Python 3 source). A leading `print x` line makes each
# snippet invalid Python 3, so the fixer does not short-circuit on valid input.
PRINT_CASES = {
    "bare": ("print\n", "print()\n"),
    "one value": ("print x\n", "print(x)\n"),
    "several values": ('print "a", b, 3\n', 'print("a", b, 3)\n'),
    "trailing comma": ("print x,\n", 'print(x, end=" ")\n'),
    "redirect": ("print >>f, x\n", "print(x, file=f)\n"),
    "redirect only": ("print >>f\n", "print(file=f)\n"),
    "redirect, values, trailing comma": (
        'print >> sys.stderr, "a", b,\n',
        'print("a", b, end=" ", file=sys.stderr)\n',
    ),
    "parenthesised first value": ("print (a), b\n", "print((a), b)\n"),
    "parenthesised expression": ("print (a) + b\n", "print((a) + b)\n"),
    "call left alone": ('print ("a", b)\n', 'print ("a", b)\n'),
    "one-line compound": ("if x: print y; print z\n", "if x: print(y); print(z)\n"),
    "comment kept": ('print "%d" % n  # count\n', 'print("%d" % n)  # count\n'),
    "continuation": ('print "a", \\\n    "b"\n', 'print("a", \\\n    "b")\n'),
    "brackets over lines": ("print [y\n    for y in z]\n", "print([y\n    for y in z])\n"),
    "indented": ("def f():\n    print x\n    return 1\n", "def f():\n    print(x)\n    return 1\n"),
    "no final newline": ("print x", "print(x)"),
    "crlf": ("print x\r\nprint\r\n", "print(x)\r\nprint()\r\n"),
    "attribute named print": ("obj.print_ = 1\nlog.print\n", "obj.print_ = 1\nlog.print\n"),
    "conditional expression": ("print a if b else c\n", "print(a if b else c)\n"),
}


@pytest.mark.parametrize("source, expected", PRINT_CASES.values(), ids=list(PRINT_CASES))
def test_fix_print_rewrites_python2_statements(source, expected):
    """Each Python 2 print statement form becomes the equivalent Python 3 call."""
    prefix = "print x\n"
    assert fix_print(prefix + source) == "print(x)\n" + expected


@pytest.mark.parametrize("source, expected", PRINT_CASES.values(), ids=list(PRINT_CASES))
def test_fix_print_keeps_line_count_and_compiles(source, expected):
    """The fixed source compiles and has exactly as many lines as the original."""
    fixed = fix_print("print x\n" + source)
    compile(fixed, "<fixed>", "exec")
    assert fixed.count("\n") == ("print x\n" + source).count("\n")


@pytest.mark.parametrize(
    "source",
    [
        'print("already python 3")\n',
        "print >>f, x\n",  # valid Python 3 (a tuple expression), so it is not ours to touch
        "print\n",
        "x = 1  # print y\ns = 'print y'\n",
        "",
    ],
    ids=["call", "shift tuple", "bare name", "print in comment and string", "empty"],
)
def test_fix_print_returns_valid_python3_unchanged(source):
    """Source that compiles as Python 3 comes back byte for byte, even when it mentions print."""
    assert fix_print(source) is source


def test_fix_print_leaves_our_own_sources_unchanged():
    """Every Python 3 file in this repository passes through the fixer untouched."""
    paths = [p for p in REPO.glob("tf1_ema/**/*.py")] + [
        p for p in REPO.glob("examples/*.py") if p.name != "py2_print.py"
    ]
    assert paths
    for path in paths:
        source = path.read_text(encoding="utf-8")
        assert fix_print(source) == source, path


def test_fix_print_respects_print_function_future_import():
    """A file importing print_function from __future__ is left for the compiler to judge."""
    source = "from __future__ import (absolute_import,\n    print_function)\nprint x\n"
    assert fix_print(source) == source


def test_fix_print_leaves_untokenizable_source_alone():
    """Source the tokenizer cannot read (an unclosed bracket) is returned as it was."""
    source = "print x\nfoo(\n"
    assert fix_print(source) == source


def test_fix_print_is_idempotent_on_the_py2_example():
    """Fixing the Python 2 example once yields Python 3 that a second fix leaves unchanged."""
    source = (REPO / "examples" / "py2_print.py").read_text(encoding="utf-8")
    fixed = fix_print(source)
    assert fixed != source
    compile(fixed, "py2_print.py", "exec")
    assert fix_print(fixed) == fixed


def test_fix_print_only_touches_print():
    """Other Python 2 syntax (`except E, e`) is left for the compiler to report."""
    fixed = fix_print("try:\n    pass\nexcept E, e:\n    print e\n")
    assert fixed == "try:\n    pass\nexcept E, e:\n    print(e)\n"


# --------------------------------------------------------------------------- input_data


def write_idx(directory, name, magic, dims, data, compress=True):
    """Writes an idx file (gzipped unless ``compress`` is False) and returns its path."""
    header = np.array([magic, *dims], dtype=">u4").tobytes()
    path = Path(directory) / (name if compress else name[: -len(".gz")])
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(header + np.asarray(data, dtype=np.uint8).tobytes())
    return path


def write_mnist(directory, train=5010, test=7, compress=True):
    """Tiny MNIST: image i is filled with the value i % 256, its label is i % 10."""
    for prefix, count in (("train", train), ("t10k", test)):
        ids = np.arange(count)
        images = np.repeat((ids % 256).astype(np.uint8), 28 * 28)
        write_idx(directory, "%s-images-idx3-ubyte.gz" % prefix, 2051, (count, 28, 28), images, compress)
        write_idx(directory, "%s-labels-idx1-ubyte.gz" % prefix, 2049, (count,), ids % 10, compress)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A directory with the four tiny MNIST idx .gz files."""
    directory = tmp_path_factory.mktemp("mnist")
    write_mnist(directory)
    return directory


def test_read_data_sets_splits_off_5000_validation_images(mnist_dir):
    """The first 5000 training images become `validation`, the rest `train`; `test` is separate."""
    data = input_data.read_data_sets(str(mnist_dir))
    assert (data.train.num_examples, data.validation.num_examples, data.test.num_examples) == (10, 5000, 7)
    np.testing.assert_array_equal(data.validation.labels[:3], [0, 1, 2])
    np.testing.assert_array_equal(data.train.labels, np.arange(5000, 5010) % 10)


def test_read_data_sets_scales_and_flattens_images(mnist_dir):
    """Images come as float32 rows of 784 scaled by 1/255, as in TF1."""
    images = input_data.read_data_sets(str(mnist_dir)).validation.images
    assert images.shape == (5000, 784) and images.dtype == np.float32
    # 1/255 rounded to float32, then a float32 product: what NumPy 1.x and 2.x both do for an array
    # (a scalar product would be float64 under NumPy 1.x's promotion rules).
    np.testing.assert_array_equal(images[3], np.float32(3) * np.float32(1.0 / 255.0))
    raw = input_data.read_data_sets(str(mnist_dir), dtype="uint8", reshape=False).test.images
    assert raw.shape == (7, 28, 28, 1) and raw.dtype == np.uint8


def test_read_data_sets_one_hot_labels_are_float64_rows(mnist_dir):
    """one_hot=True gives float64 rows of 10 with a single 1, TF1's dtype."""
    labels = input_data.read_data_sets(str(mnist_dir), one_hot=True).test.labels
    assert labels.shape == (7, 10) and labels.dtype == np.float64
    np.testing.assert_array_equal(labels.argmax(axis=1), np.arange(7) % 10)
    np.testing.assert_array_equal(labels.sum(axis=1), np.ones(7))


def test_next_batch_without_shuffle_wraps_across_epochs(mnist_dir):
    """Unshuffled batches run in order and a batch crossing the end joins the next epoch's start."""
    train = input_data.read_data_sets(str(mnist_dir)).train
    _, first = train.next_batch(6, shuffle=False)
    _, second = train.next_batch(6, shuffle=False)
    np.testing.assert_array_equal(first, [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(second, [6, 7, 8, 9, 0, 1])
    assert train.epochs_completed == 1


def test_next_batch_shuffles_each_epoch_reproducibly(mnist_dir):
    """With a seed, shuffled epochs are permutations of the data and repeat run to run."""

    def epochs(seed):
        train = input_data.read_data_sets(str(mnist_dir), seed=seed).train
        return [train.next_batch(10)[1].tolist() for _ in range(3)]

    first = epochs(7)
    assert first == epochs(7)
    for epoch in first:
        assert sorted(epoch) == list(np.arange(5000, 5010) % 10)
    assert len({tuple(e) for e in first}) > 1


def test_read_data_sets_accepts_gunzipped_files(tmp_path):
    """Files already gunzipped (no .gz suffix) are read too."""
    write_mnist(tmp_path, train=5002, test=3, compress=False)
    assert input_data.read_data_sets(str(tmp_path)).train.num_examples == 2


def test_read_data_sets_says_where_to_put_missing_files(tmp_path):
    """Missing files raise one error naming them, the absolute directory and the download URL."""
    write_idx(tmp_path, "t10k-labels-idx1-ubyte.gz", 2049, (1,), [0])
    with pytest.raises(MissingDataError) as caught:
        input_data.read_data_sets(str(tmp_path / "."))
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels" not in message
    assert str(tmp_path) in message and input_data.MNIST_URL in message
    assert isinstance(caught.value, (FileNotFoundError, LegacyError))


def test_read_data_sets_rejects_bad_input(mnist_dir, tmp_path):
    """A validation size out of range, an unknown dtype and a wrong magic number are refused."""
    with pytest.raises(ValueError, match="Validation size should be between 0 and 5010"):
        input_data.read_data_sets(str(mnist_dir), validation_size=6000)
    with pytest.raises(TypeError, match="expected uint8 or float32"):
        input_data.read_data_sets(str(mnist_dir), dtype="float16")
    bad = write_idx(tmp_path, "bad.gz", 1234, (1,), [0])
    with pytest.raises(ValueError, match="Invalid magic number 1234"):
        input_data.extract_images(str(bad))


def test_fake_data_needs_no_files(tmp_path):
    """fake_data=True serves constant rows without touching the directory."""
    data = input_data.read_data_sets(str(tmp_path / "nowhere"), fake_data=True, one_hot=True)
    images, labels = data.train.next_batch(2, fake_data=True)
    assert len(images) == 2 and len(images[0]) == 784 and labels[0][0] == 1


def test_legacy_and_cli_import_without_tensorflow():
    """The fixers, input_data, the contrib map and the CLI parser load without TensorFlow."""
    code = (
        "import sys\n"
        "import tf1_ema.legacy.py2print, tf1_ema.legacy.input_data, tf1_ema.legacy.contrib\n"
        "import tf1_ema.legacy.tf_examples, tf1_ema.runner, tf1_ema.v1, tf1_ema.cli\n"
        "tf1_ema.cli.build_parser()\n"
        "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)


# ------------------------------------------------------------------------------ contrib


@pytest.fixture
def contrib(graph):
    """The tf.contrib stand-in, built on tf.compat.v1, inside a private graph."""
    import tensorflow as tf

    from tf1_ema.legacy import contrib as contrib_module

    return contrib_module.build(tf.compat.v1)


def test_contrib_regularizers_compute_tf1_penalties(contrib, session):
    """l1/l2/l1_l2 regularizers return scale*sum|w|, scale*sum(w^2)/2 and their sum."""
    import tensorflow as tf

    weights = tf.constant([3.0, -4.0])
    l1 = contrib.layers.l1_regularizer(0.5)(weights)
    l2 = contrib.layers.l2_regularizer(0.1)(weights)
    both = contrib.layers.l1_l2_regularizer(0.5, 0.1)(weights)
    assert session.run([l1, l2, both]) == pytest.approx([3.5, 1.25, 4.75])
    assert l2.op.name == "l2_regularizer"
    assert contrib.layers.l2_regularizer(0.0)(weights) is None


def test_contrib_regularizer_scale_is_validated(contrib):
    """An integer or negative scale is refused, as TF1 refused it."""
    with pytest.raises(ValueError, match="cannot be an integer"):
        contrib.layers.l2_regularizer(1)
    with pytest.raises(ValueError, match="less than 0"):
        contrib.layers.l1_regularizer(-0.5)


def test_contrib_xavier_initializer_stays_in_glorot_bounds(contrib, session):
    """xavier_initializer draws uniformly within sqrt(6 / (fan_in + fan_out)), reproducibly by seed."""
    init = contrib.layers.xavier_initializer(seed=3)
    values = session.run(init([20, 30]))
    limit = np.sqrt(6.0 / 50)
    assert values.shape == (20, 30) and np.abs(values).max() <= limit
    assert np.abs(values).max() > 0.9 * limit
    normal = session.run(contrib.layers.xavier_initializer(uniform=False, seed=3)([200, 300]))
    assert np.abs(normal).max() <= 2 * np.sqrt(1.3 / 250) + 1e-6


def test_contrib_fully_connected_and_flatten_build_tf1_layers(contrib, session):
    """flatten keeps the batch axis; fully_connected defaults to relu and registers WEIGHTS."""
    import tensorflow as tf

    inputs = tf.ones([2, 3, 4])
    flat = contrib.layers.flatten(inputs)
    out = contrib.layers.fully_connected(flat, 5, weights_initializer=tf.compat.v1.constant_initializer(-1.0))
    session.run(tf.compat.v1.global_variables_initializer())
    assert flat.shape.as_list() == [2, 12]
    np.testing.assert_array_equal(session.run(out), np.zeros((2, 5)))  # relu of -12
    assert [v.name for v in tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.WEIGHTS)] == [
        "fully_connected/kernel:0"
    ]
    penalty = contrib.layers.apply_regularization(contrib.layers.l2_regularizer(0.5))
    assert session.run(penalty) == pytest.approx(0.5 * 60 / 2)


def test_contrib_conv_pool_dropout_keep_tf1_defaults(contrib, session):
    """conv2d pads SAME, max_pool2d strides 2 with VALID padding, dropout at inference is identity."""
    import tensorflow as tf

    images = tf.ones([1, 8, 8, 3])
    conv = contrib.layers.conv2d(images, 4, [3, 3])
    pooled = contrib.layers.max_pool2d(conv, [2, 2])
    averaged = contrib.layers.avg_pool2d(conv, [3, 3], stride=1)
    kept = contrib.layers.dropout(pooled, keep_prob=0.5, is_training=False)
    session.run(tf.compat.v1.global_variables_initializer())
    assert conv.shape.as_list() == [1, 8, 8, 4] and conv.name.startswith("Conv/")
    assert pooled.shape.as_list() == [1, 4, 4, 4] and averaged.shape.as_list() == [1, 6, 6, 4]
    np.testing.assert_array_equal(*session.run([kept, pooled]))
    assert np.all(session.run(conv) >= 0)  # relu by default


def test_contrib_rnn_maps_to_rnn_cell(contrib):
    """tf.contrib.rnn.BasicLSTMCell and static_rnn are tf.nn.rnn_cell's and tf.nn's."""
    import tensorflow as tf

    assert contrib.rnn.BasicLSTMCell is tf.compat.v1.nn.rnn_cell.BasicLSTMCell
    assert contrib.rnn.static_rnn is tf.compat.v1.nn.static_rnn
    assert contrib.framework.get_or_create_global_step is tf.compat.v1.train.get_or_create_global_step


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("slim", "tf.contrib.slim was removed in TensorFlow 2.0; use the tf-slim package"),
        ("learn", "tf.contrib.learn was removed"),
        ("layers.batch_norm", "tf.layers.batch_normalization"),
        ("rnn.AttentionCellWrapper", "tf.contrib.rnn.AttentionCellWrapper was removed"),
        ("no_such_thing", "tf.contrib.no_such_thing was removed in TensorFlow 2.0 and tf1-ema has no stand-in"),
    ],
)
def test_contrib_unmapped_symbols_fail_with_one_clear_error(contrib, path, fragment):
    """Any other tf.contrib.X raises ContribRemovedError naming X and its replacement."""
    target = contrib
    with pytest.raises(ContribRemovedError) as caught:
        for part in path.split("."):
            target = getattr(target, part)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, AttributeError)
    assert not hasattr(contrib, "slim")


def test_contrib_module_probes_get_plain_attribute_errors(contrib):
    """Dunder probes such as __path__ get an ordinary AttributeError, not the migration message."""
    with pytest.raises(AttributeError) as caught:
        contrib.__path__
    assert not isinstance(caught.value, ContribRemovedError)
    assert "layers" in dir(contrib) and "fully_connected" in dir(contrib.layers)


def test_examples_tree_holds_only_mnist_input_data():
    """tensorflow.examples serves mnist.input_data and explains anything else."""
    from tf1_ema.legacy import tf_examples

    examples = tf_examples.build()
    assert examples.tutorials.mnist.input_data is input_data
    with pytest.raises(ContribRemovedError, match="tensorflow.examples.tutorials.word2vec was removed"):
        examples.tutorials.word2vec
    assert os.path.basename(input_data.__file__) == "input_data.py"
