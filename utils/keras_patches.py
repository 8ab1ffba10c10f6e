"""A repair of Keras' TensorFlow trainer for MultiWorkerMirroredStrategy, applied only then.

It touches Keras internals, so it checks the Keras version it was written for and refuses any
other; tests/test_distribute.py checks that unpatched Keras still fails, so it goes once Keras
is fixed.
"""

import keras
import tensorflow as tf

from utils.distribute import DistributeError, in_multi_worker_mode

# Keras versions (major.minor) whose trainer this patch was written and tested for.
PATCHED_KERAS = ("3.15",)


def patch_keras_for_multi_worker() -> None:
    """Make `Model.fit` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras 3's TensorFlow trainer all-reduces the first input batch (a tuple, which the
    collective strategy cannot reduce) just to learn its shapes, and all-reduces the per-step
    logs with `axis=0` although they are scalars. Both break any `fit` on several workers; here
    the shapes come from the local batch and the logs are averaged over replicas. Other
    strategies keep Keras' own code.
    """
    version = ".".join(keras.__version__.split(".")[:2])
    if version not in PATCHED_KERAS:
        raise DistributeError(
            f"Multi-worker training replaces two steps of Keras' trainer that were written for "
            f"Keras {' / '.join(PATCHED_KERAS)}; this is Keras {keras.__version__}. Install "
            f"keras=={PATCHED_KERAS[-1]}.* for multi-worker training (one machine is not "
            "affected).")
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    trainer = keras_tf_trainer.TensorFlowTrainer
    if getattr(trainer, "_unet_multi_worker_patch", False):
        return
    symbolic_build = trainer._maybe_symbolic_build
    reduce_per_replica = keras_tf_trainer.reduce_per_replica

    def local_values(strategy, values):
        return keras.tree.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, values)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or not in_multi_worker_mode(strategy) or iterator is None:
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = local_values(strategy, next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_logs(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and in_multi_worker_mode(strategy):
            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues) else v, values)
        return reduce_per_replica(values, strategy, reduction)

    trainer._maybe_symbolic_build = maybe_symbolic_build
    keras_tf_trainer.reduce_per_replica = reduce_logs
    trainer._unet_multi_worker_patch = True


