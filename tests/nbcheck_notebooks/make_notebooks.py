"""Writes the notebooks that tests/test_nbcheck.py hands to ``tf1-ema nbcheck``.

Each stands for a class of old notebook. Their stored outputs are written here by hand to look
as the old era recorded them (Python 2 reprs, NumPy 1.13 spacing and digits, TF 1.x log lines,
last digits from other matmul kernels); only ``stale.ipynb``'s outputs come from running an
earlier version of its own code (Adam at 0.05, where the source now says 0.01).

    python tests/nbcheck_notebooks/make_notebooks.py     # rewrites the .ipynb files beside it

The ``.ipynb`` files are committed; rerun this only after changing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import nbformat
from nbformat import v4

HERE = Path(__file__).resolve().parent

PY2_METADATA = {
    "kernelspec": {"display_name": "Python 2", "language": "python", "name": "python2"},
    "language_info": {
        "codemirror_mode": {"name": "ipython", "version": 2},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython2",
        "version": "2.7.12",
    },
}
PY3_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.6.9",
    },
}


def out(text: str, name: str = "stdout") -> Any:
    """A stream output."""
    return v4.new_output("stream", name=name, text=text)


def err(ename: str, evalue: str) -> Any:
    """An error output with a short, old-looking traceback."""
    return v4.new_output("error", ename=ename, evalue=evalue,
                         traceback=["---------------------------------------------------------------------------",
                                    "%s: %s" % (ename, evalue)])


def notebook(metadata: dict, title: str, cells: List[Any]) -> Any:
    """A notebook: a markdown title, then code cells given as (source, outputs) pairs."""
    nb = v4.new_notebook(metadata=metadata)
    nb.cells.append(v4.new_markdown_cell("# " + title))
    count = 0
    for item in cells:
        if isinstance(item, str):
            nb.cells.append(v4.new_markdown_cell(item))
            continue
        source, outputs = item
        count += 1
        nb.cells.append(v4.new_code_cell(source, outputs=outputs, execution_count=count))
    for index, cell in enumerate(nb.cells):
        cell.id = "cell-%d" % index  # fixed ids, so that rerunning this script changes nothing
    return nb


PY2_NUMPY113 = notebook(PY2_METADATA, "A Python 2 notebook recorded with TF 1.3 and NumPy 1.13", [
    ("import numpy as np\nimport tensorflow as tf", []),
    ('w = tf.Variable([0.0, 0.0], name="w")\n'
     'ema = tf.train.ExponentialMovingAverage(0.99, name="avg")\n'
     "update = ema.apply([w])\n"
     "sess = tf.Session()\n"
     "sess.run(tf.initialize_all_variables())\n"
     "for value in ([3.0, 1.0], [1.0, 0.5], [4.0, 2.0]):\n"
     "    sess.run(tf.assign(w, value))\n"
     "    sess.run(update)\n"
     '    print "w", sess.run(w), "average", sess.run(ema.average(w))',
     [out("2017-09-12 10:15:31.123456: W tensorflow/core/platform/cpu_feature_guard.cc:45] The TensorFlow "
          "library wasn't compiled to use SSE4.1 instructions, but these are available on your machine and "
          "could speed up CPU computations.\n"
          "WARNING:tensorflow:From <ipython-input-2-5b3c0f4e1e47>:5: initialize_all_variables (from "
          "tensorflow.python.ops.variables) is deprecated and will be removed after 2017-03-02.\n"
          "Instructions for updating:\n"
          "Use `tf.global_variables_initializer` instead.\n", name="stderr"),
      out("w [ 3.  1.] average [ 0.02999997  0.00999999]\n"
          "w [ 1.   0.5] average [ 0.03969996  0.01489999]\n"
          "w [ 4.  2.] average [ 0.07930292  0.03475097]\n")]),
    ("a = sess.run(ema.average(w))\n"
     "print a.dtype, a.shape, type(a)\n"
     "print list(a)\n"
     "print repr(a)\n"
     "print 1.0 / 3, 0.1 + 0.2",
     [out("float32 (2L,) <type 'numpy.ndarray'>\n"
          "[0.079302922, 0.034750968]\n"
          "array([ 0.07930292,  0.03475097], dtype=float32)\n"
          "0.333333333333 0.3\n")]),
    ('names = tf.constant(["ema", "decay"])\n'
     "print sess.run(names[0])\n"
     "print sess.run(names)\n"
     "print [v.name for v in tf.global_variables()]\n"
     "print w.get_shape()\n"
     'print("steps:", 3, "average of w[0]:", a[0])',
     [out("ema\n['ema' 'decay']\n[u'w:0', u'w/avg:0']\n(2,)\n('steps:', 3, 'average of w[0]:', 0.079302922)\n")]),
    ("x = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4) / 7.0)\n"
     "print sess.run(tf.sigmoid(x))\n"
     "print sess.run(tf.reshape(tf.sigmoid(x), [-1]))",
     [out("[[ 0.5         0.53565359  0.57094663  0.60553247]\n"
          " [ 0.63909274  0.67134744  0.70206344  0.7310586 ]\n"
          " [ 0.75820386  0.78342092  0.80667865  0.82798713]]\n"
          "[ 0.5         0.53565359  0.57094663  0.60553247  0.63909274  0.67134744\n"
          "  0.70206344  0.7310586   0.75820386  0.78342092  0.80667865  0.82798713]\n")]),
])

TRAINING_SOURCE = [
    "import numpy as np\n"
    "import tensorflow as tf\n"
    "rng = np.random.RandomState(0)\n"
    "x_train = rng.uniform(-1, 1, size=(64, 3)).astype(np.float32)\n"
    "y_train = x_train.dot(np.array([[2.0], [-3.0], [0.5]], dtype=np.float32)) + 1.0\n"
    "y_train += 0.1 * rng.normal(size=(64, 1)).astype(np.float32)\n"
    'print("data:", x_train.shape, y_train.shape)',
    "tf.set_random_seed(1)\n"
    "x = tf.placeholder(tf.float32, [None, 3])\n"
    "y = tf.placeholder(tf.float32, [None, 1])\n"
    'w = tf.Variable(tf.zeros([3, 1]), name="w")\n'
    'b = tf.Variable(tf.zeros([1]), name="b")\n'
    "loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y))\n"
    "step = tf.train.get_or_create_global_step()\n"
    "train = tf.train.AdamOptimizer(LEARNING_RATE).minimize(loss, global_step=step)\n"
    "ema = tf.train.ExponentialMovingAverage(0.99, num_updates=step)\n"
    "with tf.control_dependencies([train]):\n"
    "    train_op = ema.apply([w, b])\n"
    "sess = tf.Session()\n"
    "sess.run(tf.global_variables_initializer())\n"
    "for i in range(1, 1001):\n"
    "    _, l = sess.run([train_op, loss], {x: x_train, y: y_train})\n"
    "    if i % 200 == 0:\n"
    '        print("step %4d  loss %.8f" % (i, l))',
    'print("w  ", sess.run(w).ravel())\n'
    'print("avg", sess.run(ema.average(w)).ravel())\n'
    'print("b", sess.run(b), "avg", sess.run(ema.average(b)))\n'
    'print("final loss:", sess.run(loss, {x: x_train, y: y_train}))',
    'print("steps:", sess.run(step))',
]


def training(learning_rate: str) -> List[str]:
    """The training notebook's cells with the given learning rate."""
    return [source.replace("LEARNING_RATE", learning_rate) for source in TRAINING_SOURCE]


DRIFT = notebook(PY3_METADATA, "Training numbers that drifted in the last digits (TF 1.14, NumPy 1.16)", list(zip(
    training("0.01"),
    [
        [out("/usr/local/lib/python3.6/dist-packages/tensorflow/python/framework/dtypes.py:516: FutureWarning: "
             "Passing (type, 1) or '1type' as a synonym of type is deprecated; in a future version of numpy, it "
             "will be understood as (type, (1,)) / '(1,)type'.\n"
             '  _np_qint8 = np.dtype([("qint8", np.int8, 1)])\n', name="stderr"),
         out("data: (64, 3) (64, 1)\n")],
        [out("WARNING:tensorflow:From /usr/local/lib/python3.6/dist-packages/tensorflow/python/ops/math_grad.py:1250: "
             "add_dispatch_support.<locals>.wrapper (from tensorflow.python.ops.array_ops) is deprecated and will "
             "be removed in a future version.\nInstructions for updating:\nUse tf.where in 2.0, which has the same "
             "broadcast rule as np.where\n", name="stderr"),
         out("step  200  loss 0.68175733\nstep  400  loss 0.07055981\nstep  600  loss 0.01146379\n"
             "step  800  loss 0.00877795\nstep 1000  loss 0.00872604\n")],
        [out("w   [ 2.0164118 -2.9959347  0.5277151]\navg [ 2.0159402 -2.9891949  0.5288139]\n"
             "b [0.99333584] avg [0.9933106]\nfinal loss: 0.008726041\n")],
        [out("steps: 1000\n")],
    ],
)))

STALE = notebook(PY3_METADATA, "Stale: the source says Adam(0.01), the outputs came from Adam(0.05)", list(zip(
    training("0.01"),
    [
        [out("data: (64, 3) (64, 1)\n")],
        [out("step  200  loss 0.00872565\nstep  400  loss 0.00872564\nstep  600  loss 0.00872564\n"
             "step  800  loss 0.00872564\nstep 1000  loss 0.00872564\n")],
        [out("w   [ 2.0164607 -2.997027   0.5275463]\navg [ 2.0164626 -2.997031   0.5275454]\n"
             "b [0.99333787] avg [0.993338]\nfinal loss: 0.008725638\n")],
        [out("steps: 1000\n")],
    ],
)))

EXPECTED_ERROR = notebook(PY3_METADATA, "Errors the notebook expects, and nbval's markers", [
    ("import numpy as np\nimport tensorflow as tf\n"
     'x = tf.placeholder(tf.float32, [None, 2], name="x")\n'
     'w = tf.Variable([[1.0], [2.0]], name="w")\n'
     "y = tf.matmul(x, w)\n"
     "sess = tf.Session()", []),
    'Reading a variable before initializing it fails; the notebook goes on.',
    ('print("reading w before initializing it")\nprint(sess.run(w))',
     [out("reading w before initializing it\n"),
      err("FailedPreconditionError", "Attempting to use uninitialized value w\n\t [[Node: _retval_w_0_0 = "
          "_Retval[T=DT_FLOAT, index=0, _device=\"/job:localhost/replica:0/task:0/cpu:0\"](w)]]")]),
    ("sess.run(tf.global_variables_initializer())\nprint(sess.run(y, {x: [[1.0, 1.0]]}))",
     [out("[[ 3.]]\n")]),
    ("# NBVAL_RAISES_EXCEPTION\nsess.run(y, {x: np.zeros((2, 3))})",
     [err("ValueError", "Cannot feed value of shape (2, 3) for Tensor 'x:0', which has shape '(?, 2)'")]),
    ("# NBVAL_IGNORE_OUTPUT\nimport time\nstart = time.time()\nfor _ in range(100):\n"
     "    sess.run(y, {x: [[1.0, 1.0]]})\n"
     'print("100 runs took %.3f s" % (time.time() - start))',
     [out("100 runs took 0.081 s\n")]),
    ("# NBVAL_SKIP\nfrom tensorflow.examples.tutorials.mnist import input_data\n"
     'mnist = input_data.read_data_sets("MNIST_data/", one_hot=True)',
     [out("Extracting MNIST_data/train-images-idx3-ubyte.gz\nExtracting MNIST_data/train-labels-idx1-ubyte.gz\n"
          "Extracting MNIST_data/t10k-images-idx3-ubyte.gz\nExtracting MNIST_data/t10k-labels-idx1-ubyte.gz\n")]),
    ("print(sess.run(y, {x: [[1.0, 1.0], [0.5, 0.25]]}))", [out("[[ 3.]\n [ 1.]]\n")]),
])

# Cell by cell, each differs from its stored outputs in one way nbcheck must never accept;
# cells 0 and 10 match, to show the run goes on after failures. MUST_FAIL_CELLS names them.
MUST_FAIL_CELLS = {
    1: "number beyond tolerance",
    2: "changed word",
    3: "missing line",
    4: "extra line",
    5: "different exception type",
    6: "output where none stored",
    7: "error where none stored",
    8: "stored error, none raised",
    9: "integer changed",
}
MUST_FAIL = notebook(PY3_METADATA, "Every way a cell must fail", [
    ("import numpy as np\nimport tensorflow as tf\nsess = tf.Session()\nprint(sess.run(tf.sigmoid(1.5)))",
     [out("0.81757448\n")]),
    ('print("loss %.8f" % sess.run(tf.constant(0.02476977, tf.float64)))', [out("loss 0.02486977\n")]),
    ('print("average:", sess.run(tf.constant(2.6999998)))', [out("shadow: 2.6999998\n")]),
    ('for step in (100, 200):\n    print("step", step)', [out("step 100\nstep 200\nstep 300\n")]),
    ('for step in (100, 200, 300):\n    print("step", step)', [out("step 100\nstep 200\n")]),
    ("sess.run(tf.matmul(tf.ones([2, 3]), tf.ones([2, 3])))",
     [err("InvalidArgumentError", "Matrix size-incompatible: In[0]: [2,3], In[1]: [2,3]")]),
    ("print(sess.run(tf.reduce_sum(tf.ones([3]))))", []),
    ("print([1, 2][3])", [out("3\n")]),
    ("print(len([1, 2]))", [out("2\n"), err("ZeroDivisionError", "division by zero")]),
    ('print("steps:", 1000)', [out("steps: 1001\n")]),
    ("print(sess.run(tf.sigmoid(0.0)))", [out("0.5\n")]),
])

NOTEBOOKS = {
    "py2_numpy113.ipynb": PY2_NUMPY113,
    "drift.ipynb": DRIFT,
    "expected_error.ipynb": EXPECTED_ERROR,
    "must_fail.ipynb": MUST_FAIL,
    "stale.ipynb": STALE,
}


def main(folder: Optional[Path] = None) -> None:
    """Writes every notebook into ``folder`` (default: this file's folder)."""
    for name, nb in NOTEBOOKS.items():
        nbformat.validate(nb)
        nbformat.write(nb, str((folder or HERE) / name))


if __name__ == "__main__":
    main()
