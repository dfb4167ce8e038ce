"""MNIST for beginners (softmax regression), TF1 style, plus averaged weights.

Needs the four MNIST .gz files in --data_dir (default MNIST_data/):
    tf1-ema run examples/mnist_input_data.py --data_dir MNIST_data/
"""
import tensorflow as tf
from tensorflow.examples.tutorials.mnist import input_data

flags = tf.app.flags
flags.DEFINE_string("data_dir", "MNIST_data/", "Directory holding the four MNIST .gz files.")
flags.DEFINE_integer("steps", 100, "Number of training steps.")
FLAGS = flags.FLAGS


def main(_):
    tf.set_random_seed(0)
    mnist = input_data.read_data_sets(FLAGS.data_dir, one_hot=True)
    print("train %d, validation %d, test %d" % (
        mnist.train.num_examples, mnist.validation.num_examples, mnist.test.num_examples))
    print(mnist.train.images.shape, mnist.train.images.dtype, mnist.train.labels.shape)

    x = tf.placeholder(tf.float32, [None, 784])
    W = tf.Variable(tf.zeros([784, 10]))
    b = tf.Variable(tf.zeros([10]))
    y = tf.matmul(x, W) + b
    y_ = tf.placeholder(tf.float32, [None, 10])
    cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=y))
    train_step = tf.train.GradientDescentOptimizer(0.5).minimize(cross_entropy)

    ema = tf.train.ExponentialMovingAverage(0.99)
    with tf.control_dependencies([train_step]):
        train_op = ema.apply([W, b])
    y_averaged = tf.matmul(x, ema.average(W)) + ema.average(b)

    def accuracy(logits):
        correct = tf.equal(tf.argmax(logits, 1), tf.argmax(y_, 1))
        return tf.reduce_mean(tf.cast(correct, tf.float32))

    sess = tf.InteractiveSession()
    tf.global_variables_initializer().run()
    for _ in range(FLAGS.steps):
        batch_xs, batch_ys = mnist.train.next_batch(100)
        sess.run(train_op, feed_dict={x: batch_xs, y_: batch_ys})
    test_feed = {x: mnist.test.images, y_: mnist.test.labels}
    print("epochs completed %d" % mnist.train.epochs_completed)
    print("test accuracy %.2f" % sess.run(accuracy(y), test_feed))
    print("test accuracy, averaged weights %.2f" % sess.run(accuracy(y_averaged), test_feed))


if __name__ == "__main__":
    tf.app.run()
