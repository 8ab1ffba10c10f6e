"""The optimizers: the original's Adam and Nesterov SGD, and on TensorFlow their fused kernels,
which must update the weights exactly as Keras's own classes do."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from utils.optimizers import FusedAdam, FusedSGD, make_optimizer


def test_make_optimizer_builds_the_originals_settings():
    adam = make_optimizer("adam", 1e-4, 0.9)
    assert isinstance(adam, FusedAdam) and isinstance(adam, keras.optimizers.Adam)
    assert adam.beta_1 == 0.9 and adam.beta_2 == 0.999 and adam.epsilon == 1e-7
    sgd = make_optimizer("sgd", 1e-2, 0.8)
    assert isinstance(sgd, FusedSGD) and isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == 0.8 and sgd.nesterov
    assert float(sgd.learning_rate) == pytest.approx(1e-2)
    assert type(make_optimizer("sgd", 1e-2, 0.0)) is keras.optimizers.SGD  # no momentum to fuse


def _train(optimizer, steps: int = 4) -> list[np.ndarray]:
    """A few updates of two variables by fixed gradients, with the LR changed between steps as
    the LR scheduler callback does; returns the variables and the optimizer's slots."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32"))
                 for shape in ((3, 3, 4, 5), (5,))]
    optimizer.build(variables)
    for step in range(steps):
        optimizer.learning_rate = 0.1 / (step + 1)
        grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
        optimizer.apply(grads, variables)
    return [v.numpy() for v in variables] + [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("fused, reference", [
    (lambda: FusedAdam(learning_rate=0.1, beta_1=0.9),
     lambda: keras.optimizers.Adam(learning_rate=0.1, beta_1=0.9)),
    (lambda: FusedSGD(learning_rate=0.1, momentum=0.8, nesterov=True),
     lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.8, nesterov=True)),
    (lambda: FusedSGD(learning_rate=0.1, momentum=0.8),
     lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.8)),
])
def test_fused_updates_equal_keras(fused, reference):
    got, expected = _train(fused()), _train(reference())
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # updates are ~0.1: float32 order
    assert not np.allclose(got[0], _train(fused(), steps=0)[0])  # the weights did move


def test_fused_adam_matches_the_numpy_formula():
    w, g = np.array([1.0, -2.0], np.float32), np.array([0.5, 0.25], np.float32)
    variable = keras.Variable(w)
    optimizer = FusedAdam(learning_rate=0.01, beta_1=0.9)
    optimizer.build([variable])
    optimizer.apply([g], [variable])
    optimizer.apply([g], [variable])
    m, v, expected = 0, 0, w.astype(np.float64)
    for t in (1, 2):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        expected -= 0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("optimizer_type, kernel", [("adam", "ResourceApplyAdam"),
                                                    ("sgd", "ResourceApplyKerasMomentum")])
def test_a_training_step_runs_one_fused_kernel_per_variable(optimizer_type, kernel):
    variables = [keras.Variable(np.ones(shape, np.float32)) for shape in ((4, 4), (4,))]
    optimizer = make_optimizer(optimizer_type, 1e-3, 0.9)
    optimizer.build(variables)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    grads = [tf.ones((4, 4)), tf.ones(4)]
    graph = step.get_concrete_function(grads).graph
    ops = [op.type for op in graph.get_operations()]
    ops += [node.op for f in graph.as_graph_def().library.function for node in f.node_def]
    assert ops.count(kernel) == len(variables)
    assert "Sqrt" not in ops  # no element-wise Adam left beside the fused kernel


def test_fused_optimizers_refuse_what_they_cannot_fuse():
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(amsgrad=True)
    with pytest.raises(ValueError, match="momentum"):
        FusedSGD(learning_rate=0.1)
