"""Train with a moving average, save, then restore the *shadow* value into the variable.

variables_to_restore() maps each shadow's checkpoint name to the plain variable, so the
evaluation graph needs no EMA plumbing at all: it just sees averaged weights.
"""
import os
import shutil
import tempfile

import tensorflow as tf

ckpt_dir = tempfile.mkdtemp()
ckpt_path = os.path.join(ckpt_dir, "model.ckpt")

# Training graph: a variable, its average, a Saver that saves both.
v = tf.Variable(0.0, name="v")
ema = tf.train.ExponentialMovingAverage(0.99)
maintain_averages_op = ema.apply(tf.global_variables())
saver = tf.train.Saver()
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    sess.run(tf.assign(v, 10.0))
    sess.run(maintain_averages_op)
    saver.save(sess, ckpt_path)
    print(sess.run([v, ema.average(v)]))
    print(sorted(name for name, _ in tf.train.list_variables(ckpt_dir)))

# Evaluation graph: restore v from v/ExponentialMovingAverage.
tf.reset_default_graph()
v = tf.Variable(0.0, name="v")
ema = tf.train.ExponentialMovingAverage(0.99)
print(ema.variables_to_restore())
saver = tf.train.Saver(ema.variables_to_restore())
with tf.Session() as sess:
    saver.restore(sess, ckpt_path)
    print(sess.run(v))

shutil.rmtree(ckpt_dir)
