"""A small regression net with tf.layers.dense, trained with an EMA of its weights.

The EMA update runs after each training step (tf.control_dependencies), and the
evaluation copy of the network reads the averages through a custom getter.
"""
import numpy as np
import tensorflow as tf

tf.set_random_seed(1)
rng = np.random.RandomState(0)
x_data = rng.rand(64, 3).astype(np.float32)
y_data = (x_data.dot([[0.5], [-1.0], [2.0]]) + 0.3).astype(np.float32)

x = tf.placeholder(tf.float32, [None, 3], name="x")
y = tf.placeholder(tf.float32, [None, 1], name="y")


def model(inputs, getter=None):
    with tf.variable_scope("model", reuse=tf.AUTO_REUSE, custom_getter=getter):
        hidden = tf.layers.dense(inputs, 8, activation=tf.nn.relu, name="hidden")
        return tf.layers.dense(hidden, 1, name="out")


loss = tf.reduce_mean(tf.square(model(x) - y))
global_step = tf.Variable(0, trainable=False, name="global_step")
train_step = tf.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=global_step)

ema = tf.train.ExponentialMovingAverage(0.9, num_updates=global_step)
with tf.control_dependencies([train_step]):
    train_op = tf.group(ema.apply(tf.trainable_variables()))


def ema_getter(getter, name, *args, **kwargs):
    return ema.average(getter(name, *args, **kwargs))


averaged_loss = tf.reduce_mean(tf.square(model(x, ema_getter) - y))

print(x.get_shape(), x.get_shape()[1].value)
for var in tf.trainable_variables():
    print(var.name, "->", ema.average_name(var))
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    feed = {x: x_data, y: y_data}
    for i in range(201):
        sess.run(train_op, feed)
        if i % 50 == 0:
            raw, averaged = sess.run([loss, averaged_loss], feed)
            print("step %3d  loss %.4f  averaged %.4f" % (i, raw, averaged))
    print("global step", sess.run(global_step))
