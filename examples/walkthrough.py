"""ExponentialMovingAverage step by step: the classic TF1 walkthrough.

The decay is min(0.99, (1 + step) / (10 + step)), so a young step counter makes the
average move fast and an old one makes it move slowly.

    tf1-ema run examples/walkthrough.py
"""
import tensorflow as tf

# The variable to average, and the step counter that drives the decay.
w1 = tf.Variable(0, dtype=tf.float32)
step = tf.Variable(0, trainable=False)

ema = tf.train.ExponentialMovingAverage(0.99, step)
# Creates the shadow variable and returns the op that updates it.
maintain_averages_op = ema.apply([w1])

with tf.Session() as sess:
    init_op = tf.global_variables_initializer()
    sess.run(init_op)
    # The shadow starts at the variable's value.
    print(sess.run([w1, ema.average(w1)]))

    # step 0: decay = min(0.99, 1/10) = 0.1, so the shadow moves 90% of the way to 3.
    sess.run(tf.assign(w1, 3))
    sess.run(maintain_averages_op)
    print(sess.run([w1, ema.average(w1)]))

    # step 1000: decay = min(0.99, 1001/1010) = 0.99, so it moves 1% of the way.
    sess.run(tf.assign(step, 1000))
    sess.run(maintain_averages_op)
    print(sess.run([w1, ema.average(w1)]))
