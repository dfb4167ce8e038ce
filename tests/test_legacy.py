"""tf1_ema.legacy: the Python 2 translator, the MNIST input_data stand-in, the tf.contrib map.

The translator and input_data tests import no TensorFlow; the contrib tests build ops in a
private graph (the ``graph``/``session`` fixtures) and leave global state alone.
"""

import ast
import contextlib
import gzip
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

import py2_golden
from limits import TIMEOUT
from tf1_ema.legacy import era_repr, input_data, py2runtime, py2to3
from tf1_ema.legacy.errors import ContribRemovedError, LegacyError, MissingDataError

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------ py2to3


def run_py2(source: str, force=None, stdin: str = py2_golden.STDIN) -> str:
    """Translates ``source`` when the rule says so, runs it in a fresh namespace, returns stdout."""
    translation = py2to3.translate(source) if py2to3.decide(source, force) else None
    namespace = {"__name__": "__py2_test__"}
    if translation is None:
        code = compile(source, "<py2>", "exec", dont_inherit=True)
    else:
        code = compile(translation.remap(ast.parse(translation.source)), "<py2>", "exec", dont_inherit=True)
        namespace[py2runtime.HELPER_NAME] = py2runtime.RUNTIME
    out = io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    finally:
        sys.stdin = saved
    return out.getvalue()


NO_TF_GOLDEN = {name: row for name, row in py2_golden.GOLDEN.items() if not row[2]}


@pytest.mark.parametrize("source, expected", [row[:2] for row in NO_TF_GOLDEN.values()], ids=list(NO_TF_GOLDEN))
def test_golden_snippet_prints_what_python2_printed(source, expected):
    """Each golden-table snippet, translated and run in-process, prints Python 2.7's output."""
    assert run_py2(py2_golden.PRELUDE + source, force=True) == expected


def test_future_division_keeps_true_division():
    """`from __future__ import division` leaves `/` as true division, as in Python 2."""
    source, expected = py2_golden.FUTURE_DIVISION
    assert run_py2(source, force=True) == expected


def test_future_division_from_an_earlier_cell_counts():
    """A kernel passes futures from earlier cells; `/` then divides truly."""
    translation = py2to3.translate("print 7 / 2\n", futures={"division"})
    assert "div(" not in translation.source


@pytest.mark.parametrize(
    "source",
    [
        'print("already python 3")\n',
        'print("a", end="")\nprint(1)\n',
        "x = 1  # print y\ns = 'print y'\n",
        "x = 7 / 2\n",
        "log = print\nlog(print)\n",
        "",
    ],
    ids=["call", "calls", "print in comment and string", "division", "print as a value", "empty"],
)
def test_python3_source_is_never_translated(source):
    """Source that compiles as Python 3 is not translated unless translation is forced."""
    assert not py2to3.decide(source)
    assert py2to3.decide(source, force=True) and not py2to3.decide(source, force=False)


def test_our_own_sources_are_python3():
    """No module of tf1_ema and no example other than the Python 2 one would be translated."""
    paths = [p for p in REPO.glob("tf1_ema/**/*.py")] + [
        p for p in REPO.glob("examples/*.py") if p.name != "py2_print.py"
    ]
    for path in paths:
        assert not py2to3.decide(path.read_text(encoding="utf-8")), path


@pytest.mark.parametrize(
    "source",
    ["print >>f, x\n", "print\n", "print [1, 2]\n", "print -1\n", "print (a), b\n", "if x:\n    print [y]\n"],
    ids=["shift tuple", "bare name", "list", "negative number", "parenthesised first value", "nested"],
)
def test_print_statements_that_parse_as_python3_are_python2(source):
    """A print statement that is valid Python 3 only by accident (a no-op or TypeError there) is translated."""
    assert py2to3.decide(source)


def test_python2_source_is_detected():
    """A file with Python 2 syntax is translated; one that is neither Python is not."""
    assert py2to3.decide("print 'x'\n")
    assert py2to3.decide("try:\n    pass\nexcept E, e:\n    pass\n")
    assert not py2to3.decide("x = 1\nexcept E, e:\n    print e\n")
    assert py2to3.translate("foo(\n") is None


def test_print_function_import_keeps_python3_print():
    """With print_function imported, `print("a", 1)` prints `a 1` (not a tuple) even when forced."""
    assert run_py2('from __future__ import print_function\nprint("a", 1, sep="-")\n', force=True) == "a-1\n"


def test_forced_translation_accepts_python3_print_calls():
    """A forced cell written as Python 3 (keyword arguments to print) still translates and runs."""
    assert run_py2('print("a", end="!")\nprint(7 / 2)\n', force=True) == "a!3\n"


def test_untranslated_python3_print_keeps_python3_text():
    """Python 3 code keeps Python 3's text for bytes and true division."""
    assert run_py2("print(b'x', 7 / 2)\n") == "b'x' 3.5\n"


def test_line_numbers_stay_the_users_where_a_fixer_adds_lines():
    """Lines a fixer inserts (imports for reduce and urllib names) do not shift the user's line numbers."""
    source = "from urllib import urlencode, urlretrieve\nx = reduce(max, [1, 2])\n\ny = 1 / 0\n"
    translation = py2to3.translate(source)
    assert translation.source.count("\n") > source.count("\n")
    code = compile(translation.remap(ast.parse(translation.source)), "<py2>", "exec")
    namespace = {py2runtime.HELPER_NAME: py2runtime.RUNTIME}
    with pytest.raises(ZeroDivisionError) as info:
        exec(code, namespace)
    (frame,) = [f for f in traceback.extract_tb(info.value.__traceback__) if f.filename == "<py2>"]
    assert frame.lineno == 4


def test_translation_keeps_line_count_for_common_forms():
    """Print, dict, except and division fixes change no line count, so every line maps to itself."""
    source = 'print "a",\nd = {}\nfor k in d.iterkeys(): print k / 2\ntry:\n    pass\nexcept E, e:\n    print >>f, e\n'
    translation = py2to3.translate(source)
    assert translation.source.count("\n") == source.count("\n")
    assert translation.line_map[1 : source.count("\n") + 1] == list(range(1, source.count("\n") + 1))


def test_builtins_the_code_binds_itself_are_not_redirected():
    """A module that defines its own `round` (or names a variable `file`) keeps calling its own."""
    source = "def round(x):\n    return 'mine'\nfile = 'f.txt'\nprint round(2.5), file\n"
    assert run_py2(source, force=True) == "mine f.txt\n"


def test_mixed_tab_and_space_indentation_runs_as_python2_counted_it():
    """A block indented with spaces on one line and a tab on the next (8 columns) runs, as in Python 2."""
    source = "if True:\n        x = 'a\\tb'\n\tprint x\n"
    assert run_py2(source) == "a\tb\n"


def test_builtins_used_as_values_are_still_redirected_where_called():
    """`map(str, xs)` elsewhere in a module does not stop `str(b)` from giving Python 2's text."""
    source = "names = map(str, [1, 2])\nb = 'x'.encode('ascii')\nprint str(b) + '!', names\n"
    assert run_py2(source, force=True) == "x! ['1', '2']\n"


def test_python2_print_in_the_numpy_113_era_uses_both_formatters():
    """Translated code's print shows NumPy 1.13's scalars and Python 2's byte strings in one list."""
    from tf1_ema.legacy import np113print

    era_repr.register("numpy-1.13", np113print.ERA_TYPES, np113print.era_formatter)
    try:
        source = "import numpy as np\nprint [np.float32(4.555), 'a'.encode('ascii')], np.float32(4.555)\n"
        assert run_py2(source) == "[4.5549998, 'a'] 4.555\n"
    finally:
        era_repr.unregister("numpy-1.13")


def test_py2_example_translates_and_compiles():
    """The Python 2 example translates into valid Python 3."""
    source = (REPO / "examples" / "py2_print.py").read_text(encoding="utf-8")
    assert py2to3.decide(source)
    compile(py2to3.translate(source).source, "py2_print.py", "exec")


@pytest.mark.parametrize(
    "a, b, expected",
    [(7, 2, 3), (-7, 2, -4), (7.0, 2, 3.5), (True, 1, 1), (7, 2.0, 3.5), (1, 0.5, 2.0)],
)
def test_old_div_floors_only_integers(a, b, expected):
    """old_div is `//` for two integers and `/` otherwise, and returns the same type Python 2 did."""
    result = py2runtime.old_div(a, b)
    assert result == expected and type(result) is type(expected)


def test_old_div_on_numpy_values():
    """NumPy integer scalars and arrays floor; float arrays divide truly."""
    assert py2runtime.old_div(np.int64(7), 2) == 3
    np.testing.assert_array_equal(py2runtime.old_div(np.arange(4), 2), [0, 0, 1, 1])
    np.testing.assert_array_equal(py2runtime.old_div(np.arange(4.0), 2), [0, 0.5, 1, 1.5])
    assert py2runtime.old_div(np.arange(4), 2).dtype.kind == "i"


def test_old_div_asks_python2_div_methods():
    """An object with Python 2's `__div__`/`__rdiv__` (TF1's Tensor) is divided through them."""

    class Old:
        def __div__(self, other):
            return "div"

        def __rdiv__(self, other):
            return "rdiv"

    assert py2runtime.old_div(Old(), 2) == "div" and py2runtime.old_div(2, Old()) == "rdiv"


def test_py2_text_of_values():
    """Bytes print bare alone and quoted inside containers; recursion shows [...]."""
    loop = [b"x"]
    loop.append(loop)
    assert py2runtime.py2_text(b"Hello") == "Hello"
    assert py2runtime.py2_text([b"a", b"b"]) == "['a', 'b']"
    assert py2runtime.py2_text({b"k": (b"v",)}) == "{'k': ('v',)}"
    assert py2runtime.py2_text(loop) == "['x', [...]]"
    assert py2runtime.py2_text(b"it's") == "it's" and py2runtime.py2_text([b"it's"]) == '["it\'s"]'


def test_era_repr_formatters_are_tagged_and_ordered():
    """A tagged formatter applies only with its tag and then before untagged ones; latest first; None declines."""
    try:
        era_repr.register("test-int", int, lambda x, mode: "<%d %s>" % (x, mode), tag="test")
        assert era_repr.render([1], tags={"test"}) == "[<1 repr>]"
        assert era_repr.render(1, tags={"test"}) == "<1 str>"
        assert era_repr.render([1]) == "[1]"
        era_repr.register("test-int-2", int, lambda x, mode: None if x else "zero")
        era_repr.register("test-int-3", int, lambda x, mode: None if x else "nil")
        assert era_repr.render((0, 1), tags={"test"}) == "(<0 repr>, <1 repr>)"
        assert era_repr.render((0, 1)) == "(nil, 1)"
        assert not era_repr.needs_render(["a"], tags={"test"})
    finally:
        era_repr.unregister("test-int")
        era_repr.unregister("test-int-2")
        era_repr.unregister("test-int-3")
    assert era_repr.render([1], tags={"test"}) == "[1]"

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
def indexed_mnist_dir(tmp_path_factory):
    """A directory with the four tiny MNIST idx .gz files."""
    directory = tmp_path_factory.mktemp("mnist")
    write_mnist(directory)
    return directory


def test_read_data_sets_splits_off_5000_validation_images(indexed_mnist_dir):
    """The first 5000 training images become `validation`, the rest `train`; `test` is separate."""
    data = input_data.read_data_sets(str(indexed_mnist_dir))
    assert (data.train.num_examples, data.validation.num_examples, data.test.num_examples) == (10, 5000, 7)
    np.testing.assert_array_equal(data.validation.labels[:3], [0, 1, 2])
    np.testing.assert_array_equal(data.train.labels, np.arange(5000, 5010) % 10)


def test_read_data_sets_scales_and_flattens_images(indexed_mnist_dir):
    """Images come as float32 rows of 784 scaled by 1/255, as in TF1."""
    images = input_data.read_data_sets(str(indexed_mnist_dir)).validation.images
    assert images.shape == (5000, 784) and images.dtype == np.float32
    # 1/255 rounded to float32, then a float32 product: what NumPy 1.x and 2.x both do for an array
    # (a scalar product would be float64 under NumPy 1.x's promotion rules).
    np.testing.assert_array_equal(images[3], np.float32(3) * np.float32(1.0 / 255.0))
    raw = input_data.read_data_sets(str(indexed_mnist_dir), dtype="uint8", reshape=False).test.images
    assert raw.shape == (7, 28, 28, 1) and raw.dtype == np.uint8


def test_read_data_sets_one_hot_labels_are_float64_rows(indexed_mnist_dir):
    """one_hot=True gives float64 rows of 10 with a single 1, TF1's dtype."""
    labels = input_data.read_data_sets(str(indexed_mnist_dir), one_hot=True).test.labels
    assert labels.shape == (7, 10) and labels.dtype == np.float64
    np.testing.assert_array_equal(labels.argmax(axis=1), np.arange(7) % 10)
    np.testing.assert_array_equal(labels.sum(axis=1), np.ones(7))


def test_next_batch_without_shuffle_wraps_across_epochs(indexed_mnist_dir):
    """Unshuffled batches run in order and a batch crossing the end joins the next epoch's start."""
    train = input_data.read_data_sets(str(indexed_mnist_dir)).train
    _, first = train.next_batch(6, shuffle=False)
    _, second = train.next_batch(6, shuffle=False)
    np.testing.assert_array_equal(first, [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(second, [6, 7, 8, 9, 0, 1])
    assert train.epochs_completed == 1


def test_next_batch_shuffles_each_epoch_reproducibly(indexed_mnist_dir):
    """With a seed, shuffled epochs are permutations of the data and repeat run to run."""

    def epochs(seed):
        train = input_data.read_data_sets(str(indexed_mnist_dir), seed=seed).train
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


def test_read_data_sets_rejects_bad_input(indexed_mnist_dir, tmp_path):
    """A validation size out of range, an unknown dtype and a wrong magic number are refused."""
    with pytest.raises(ValueError, match="Validation size should be between 0 and 5010"):
        input_data.read_data_sets(str(indexed_mnist_dir), validation_size=6000)
    with pytest.raises(TypeError, match="expected uint8 or float32"):
        input_data.read_data_sets(str(indexed_mnist_dir), dtype="float16")
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
        "import tf1_ema.legacy.py2to3, tf1_ema.legacy.input_data, tf1_ema.legacy.contrib\n"
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
