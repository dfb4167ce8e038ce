"""The 2016 notebook style: an InteractiveSession, .eval()/.run(), initialize_all_variables."""
import tensorflow as tf

sess = tf.InteractiveSession()

w = tf.Variable([1.0, 2.0], name="weights")
b = tf.Variable(0.5, name="bias")
ema = tf.train.ExponentialMovingAverage(decay=0.5)
update = ema.apply([w, b])

tf.initialize_all_variables().run()
for value in [3.0, 5.0, 9.0]:
    tf.assign(w, [value, value + 1]).eval()
    update.run()
    print(w.eval(), ema.average(w).eval(), ema.average(b).eval())
print(ema.average_name(w), ema.average_name(b))
print([v.name for v in tf.moving_average_variables()])
sess.close()
