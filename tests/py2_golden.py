"""The Python 2 golden table: snippets and the output Python 2.7 printed for them.

Each expected output follows from Python 2.7's documented semantics (classic division,
``print`` statement and ``softspace``, ``str`` of a float with 12 significant digits,
byte strings as ``str``, list-returning ``map``/``zip``/``range``/``dict.keys``) and TF1's
(``tensor / 2`` is ``tf.div``, which floors integer tensors; a string tensor evaluates
to a ``str``). One table serves three runners: the translator in-process
(``test_legacy``), ``tf1-ema run`` (``test_runner``) and the kernel (``test_kernel``).

``GOLDEN`` maps an id to ``(source, expected stdout, needs_tensorflow)``. Snippets
reuse no names from earlier ones except ``np``/``tf``/``sess`` from ``PRELUDE``, so they
run one after another in one module or one kernel. ``FUTURE_DIVISION`` must be the
first statement of its module, and in a kernel it changes the cells after it, so it is
run apart. ``STDIN`` is what ``raw_input()`` reads.
"""

PRELUDE = "import numpy as np\n"
TF_PRELUDE = "import tensorflow as tf\nsess = tf.Session()\n"
STDIN = "typed\n"

GOLDEN = {
    # Integer division, decided at run time.
    "int / int": ("print 7 / 2\n", "3\n", False),
    "negative int / int floors": ("print -7 / 2\n", "-4\n", False),
    "float / int": ("print 7.0 / 2\n", "3.5\n", False),
    "numpy int64 / int": ("print np.int64(7) / 2\n", "3\n", False),
    "numpy int array / int": ("print np.arange(4) / 2\n", "[0 0 1 1]\n", False),
    "names hold ints": ("n, k = 10, 4\nprint n / k, n % k, float(n) / k\n", "2 2 2.5\n", False),
    "augmented /=": ("m = 10\nm /= 4\nprint m\n", "2\n", False),
    "augmented /= on an int array is in place": (
        "arr = np.arange(4)\nview = arr\narr /= 2\nprint view\n",
        "[0 0 1 1]\n",
        False,
    ),
    "chained * and /": ("print 3 * 5 / 2, 5 / 2 * 2.0\n", "7 4.0\n", False),
    "batch count": ("batches = 1000 / 128\nprint batches, range(3)[5 / 2]\n", "7 2\n", False),
    # print: trailing comma, >>, Python 2 text.
    "print several": ('print "a", 1, None\n', "a 1 None\n", False),
    "print tuple": ('print ("a", 1)\n', "('a', 1)\n", False),
    "bare print": ("print\n", "\n", False),
    "trailing comma": ('for i in range(3):\n    print i,\nprint\nprint "x",\nprint "y"\n', "0 1 2\nx y\n", False),
    "print >>f": (
        'import sys\nprint >>sys.stdout, "to", "stdout"\nprint >>sys.stdout\n',
        "to stdout\n\n",
        False,
    ),
    "print >>f into a binary file": (
        'import io\nraw = io.BytesIO()\nprint >>raw, "bytes", 1\nprint [raw.getvalue()]\n',
        "['bytes 1\\n']\n",
        False,
    ),
    "float str has 12 digits": ("print 1.0 / 3, [1.0 / 3], 2.0\n", "0.333333333333 [0.3333333333333333] 2.0\n", False),
    "bytes print as str": (
        "s = 'abc'.encode('ascii')\nprint s, [s, 'd'.encode('ascii')], (s,), {s: 1}\n",
        "abc ['abc', 'd'] ('abc',) {'abc': 1}\n",
        False,
    ),
    "% and format of bytes and floats": (
        "t = 'x'.encode('ascii')\n"
        "print '%s and %r' % (t, t), '%s %.2f %d' % (1.0 / 3, 1.0 / 3, 7 / 2), '%(k)s' % {'k': t}\n"
        "print '{} {!r} {:.1f}'.format(t, t, 0.25), str(t), str(1.0 / 3), str([t]), '{0}'.format(2.0).upper()\n",
        "x and 'x' 0.333333333333 0.33 3 x\nx 'x' 0.2 x 0.333333333333 ['x'] 2.0\n",
        False,
    ),
    "set": ("print set([1, 2])\n", "set([1, 2])\n", False),
    # Dicts.
    "dict lists": (
        "d = {'a': 1}\nprint d.keys(), d.values(), d.items(), d.has_key('a'), d.has_key('b')\n",
        "['a'] [1] [('a', 1)] True False\n",
        False,
    ),
    "dict iterators": (
        "e = {'b': 2}\nfor k, v in e.iteritems():\n    print k, v\nprint list(e.iterkeys()), list(e.itervalues())\n",
        "b 2\n['b'] [2]\n",
        False,
    ),
    # Builtins that changed.
    "xrange": ("print sum(xrange(5)), list(xrange(3))\n", "10 [0, 1, 2]\n", False),
    "range is a list": ("r = range(3)\nr.append(3)\nprint r\n", "[0, 1, 2, 3]\n", False),
    "map filter zip are lists": (
        "print map(str, [1, 2]), filter(None, [0, 1]), zip([1], [2]), len(map(abs, [-1]))\n",
        "['1', '2'] [1] [(1, 2)] 1\n",
        False,
    ),
    "reduce": ("print reduce(lambda a, b: a * b, [1, 2, 3, 4])\n", "24\n", False),
    "next method": ("it = iter([1, 2])\nprint it.next(), next(it)\n", "1 2\n", False),
    "raw_input": ("name = raw_input()\nprint 'hi', name\n", "hi typed\n", False),
    "unicode basestring long": (
        'print isinstance(u"x", basestring), unicode("a"), long(3), 10L + 1\n',
        "True a 3 11\n",
        False,
    ),
    "round returns a float, halves away from zero": (
        "print round(2.5), round(-0.5), round(7.6), round(2.675, 2), round(1234, -2)\n",
        "3.0 -1.0 8.0 2.67 1200.0\n",
        False,
    ),
    "octal literals": ("print 0777, 010, 0\n", "511 8 0\n", False),
    "backticks": ("w = 'a'\nprint `w`, `[1, 2]`\n", "'a' [1, 2]\n", False),
    "exec statement": ('exec "z = 6 * 7"\nprint z\n', "42\n", False),
    "except and raise forms": (
        'try:\n    raise ValueError, "bad"\nexcept ValueError, e:\n    print "caught", e\n',
        "caught bad\n",
        False,
    ),
    # Renamed modules.
    "urllib and urllib2": (
        "import urllib, urllib2\n"
        "print callable(urllib.urlretrieve), callable(urllib2.urlopen), urllib.urlencode({'q': 1})\n",
        "True True q=1\n",
        False,
    ),
    "from urllib import": (
        "from urllib import urlretrieve, urlencode, quote\nprint callable(urlretrieve), quote('a b')\n",
        "True a%20b\n",
        False,
    ),
    "cPickle": ("import cPickle\nprint cPickle.loads(cPickle.dumps([1, 2]))\n", "[1, 2]\n", False),
    "StringIO": ('import StringIO\nf = StringIO.StringIO()\nprint >>f, "x"\nprint repr(f.getvalue())\n', "'x\\n'\n", False),
    "ConfigParser": ("import ConfigParser\nprint ConfigParser.ConfigParser().sections()\n", "[]\n", False),
    "Queue": ("import Queue\nq = Queue.Queue()\nq.put(1)\nprint q.get()\n", "1\n", False),
    # TensorFlow values.
    "string tensor prints as str": ('print sess.run(tf.constant("Hello, TensorFlow!"))\n', "Hello, TensorFlow!\n", True),
    "string tensor in a list": ('print sess.run([tf.constant("a"), tf.constant(1)])\n', "['a', 1]\n", True),
    "string tensor array": ('print sess.run(tf.constant(["a", "b"]))\n', "['a' 'b']\n", True),
    "string tensor in % formatting": ('print "Result: %s" % sess.run(tf.constant("Hi"))\n', "Result: Hi\n", True),
    "int tensor / int floors (tf.div)": ("print sess.run(tf.constant(7) / 2)\n", "3\n", True),
    "float tensor / int": ("print sess.run(tf.constant(7.0) / 2)\n", "3.5\n", True),
    "int tensor /= int": ("u = tf.constant([7, -7])\nu /= 2\nprint sess.run(u)\n", "[ 3 -4]\n", True),
}

# `from __future__ import division` turns classic division off for its module.
FUTURE_DIVISION = ("from __future__ import division\nprint 7 / 2, 7 // 2\n", "3.5 3\n")


def script(with_tensorflow: bool = True) -> str:
    """All snippets as one Python 2 module, each output preceded by a ``=== id`` line.

    Args:
        with_tensorflow: include the snippets that need TensorFlow.

    Returns:
        The module text.
    """
    parts = [PRELUDE + (TF_PRELUDE if with_tensorflow else "")]
    for name, (source, _, needs_tf) in GOLDEN.items():
        if needs_tf and not with_tensorflow:
            continue
        parts.append("print %r\n%s" % ("=== " + name, source))
    return "".join(parts)


def split_output(stdout: str) -> dict:
    """Splits ``script()``'s stdout into ``{id: output}``.

    Args:
        stdout: what the module printed.

    Returns:
        Each snippet's output keyed by its id.
    """
    outputs = {}
    name = None
    for line in stdout.splitlines(keepends=True):
        if line.startswith("=== "):
            name = line[4:].rstrip("\n")
            outputs[name] = ""
        elif name is not None:
            outputs[name] += line
    return outputs
