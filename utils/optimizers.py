"""The optimizers of the original trainer: Adam, or SGD with Nesterov momentum.

On the TensorFlow backend each variable's update is one fused TensorFlow kernel
(ResourceApplyAdam, ResourceApplyKerasMomentum), as in the Keras 2 optimizers the original
trained with. Keras 3 composes the same update from about a dozen element-wise ops, each a pass
over the weights: for the ResNet50 U-Net on a 2-core CPU that made a 64x64 training step 15%
slower and its first (traced) step 9 s longer. JAX and PyTorch keep Keras's own classes.
"""

import keras

from utils.backend import is_tensorflow
from utils.schedules import check_optimizer_type


def _handle(variable):
    """The resource handle of a Keras variable, or of the tf.Variable Keras passes to
    update_step (a per-device component under tf.distribute)."""
    return variable.value.handle if isinstance(variable, keras.Variable) else variable.handle


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam (TensorFlow backend only), each variable updated by one
    ResourceApplyAdam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g², and
    w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + epsilon), the formula Keras uses."""

    def __init__(self, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("FusedAdam has no amsgrad; use keras.optimizers.Adam for it.")
        super().__init__(**kwargs)

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


class FusedSGD(keras.optimizers.SGD):
    """keras.optimizers.SGD with momentum (TensorFlow backend only), each variable updated by
    one ResourceApplyKerasMomentum: m = momentum m - lr g, then w += m (or, with Nesterov,
    w += momentum m - lr g), the formula Keras uses."""

    def __init__(self, **kwargs):
        if not kwargs.get("momentum"):
            raise ValueError("FusedSGD needs momentum > 0; use keras.optimizers.SGD without it.")
        super().__init__(**kwargs)

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        dtype = variable.dtype
        momentum = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(momentum),
            lr=tf.cast(learning_rate, dtype), grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype), use_nesterov=self.nesterov)


def make_optimizer(
    optimizer_type: str, learning_rate: float, momentum: float
) -> keras.optimizers.Optimizer:
    """Adam (momentum as beta_1) or Nesterov SGD, as the original trainer builds them; fused
    on the TensorFlow backend."""
    check_optimizer_type(optimizer_type)
    fused = is_tensorflow()
    if optimizer_type == "adam":
        adam = FusedAdam if fused else keras.optimizers.Adam
        return adam(learning_rate=learning_rate, beta_1=momentum)
    sgd = FusedSGD if fused and momentum > 0 else keras.optimizers.SGD
    return sgd(learning_rate=learning_rate, momentum=momentum, nesterov=True)
