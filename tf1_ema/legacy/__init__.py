"""Source fixes and stand-ins for the parts of TensorFlow 1 that old code still reaches for.

Nothing in this package imports TensorFlow at import time, so its pieces can be tested and
used (by ``tf1_ema.cli``'s argument checks, by the Jupyter kernel's cell transformer) without
paying for a TensorFlow import.

Modules:
    py2to3: ``translate(source)`` turns Python 2 source into Python 3 with Python 2's meaning.
    py2runtime: what translated code calls at run time (``/``, ``/=``, ``print``).
    input_data: ``tensorflow.examples.tutorials.mnist.input_data`` rebuilt on NumPy.
    tf_examples: the ``tensorflow.examples`` module tree that holds ``input_data``.
    contrib: the ``tf.contrib`` stand-in: common symbols mapped, the rest one clear error.
    np113print: NumPy 1.13's str/repr of arrays and scalars, and the hook that installs it.
    era_repr: the registry ``print`` and the kernel's display ask for an era's text of values
        whose type cannot be re-routed (NumPy scalars, Python 2's byte strings).
    tflog: TF 1.x's log output per minor (the table in tf1_log_messages.json, the filter,
        ``--tf-version`` / ``TF1_EMA_TF_VERSION``).
    idioms: which ``tensorflow.python.*`` modules user code gets with TF1 contents, and the
        one-line messages for those that are gone (``tf.estimator`` included).
    libshims: NumPy / Pillow / scipy.misc stand-ins with the names TF1-era code used.
    errors: the exceptions these stand-ins raise; their messages are complete, user-facing
        sentences that name the problem and the fix.
"""
