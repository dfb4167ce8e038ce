# -*- coding: utf-8 -*-
# A Python 2 era script: print statements, not calls. tf1-ema translates them.
import sys

import tensorflow as tf

x = tf.Variable(10.0, name="x")
ema = tf.train.ExponentialMovingAverage(decay=0.9)
update = ema.apply([x])
shadow = ema.average(x)

sess = tf.Session()
sess.run(tf.global_variables_initializer())
print "shadow variable:", shadow.name
for i in range(3):
    sess.run(tf.assign_add(x, 1.0))
    sess.run(update)
    # The trailing comma keeps the next print on the same line.
    print "step", i, "value", sess.run(x), "average",
    print sess.run(shadow)
print >>sys.stderr, "(progress goes to stderr)"
print sess.run([x, shadow])
print
print "done"
sess.close()
