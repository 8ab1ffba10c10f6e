"""LR scaling, schedules and optimizers against values computed by hand from the original's
formulas."""

import pickle
from types import SimpleNamespace

import keras
import pytest

from utils.optimizers import make_optimizer
from utils.schedules import fit_learning_rates, get_lr_scheduler


@pytest.mark.parametrize(
    "epoch, expected",
    [(0, 1e-5), (1, 2e-5), (2, 5e-5), (3, 1e-4), (49, 5.05e-5), (94, 1.03e-6)],
)
def test_cos_schedule_hand_computed_values(epoch, expected):
    schedule = get_lr_scheduler("cos", 1e-4, 1e-6, 100)
    assert schedule(epoch) == pytest.approx(expected, rel=1e-2)


def test_cos_schedule_is_monotonic_and_ends_at_min_lr():
    schedule = get_lr_scheduler("cos", 1e-4, 1e-6, 100)
    lrs = [schedule(e) for e in range(100)]
    assert lrs[:4] == sorted(lrs[:4])
    assert lrs[3:] == sorted(lrs[3:], reverse=True)
    assert all(lr == 1e-6 for lr in lrs[95:])
    assert all(type(lr) is float for lr in lrs)


def test_cos_schedule_short_runs_stay_finite():
    for total in (1, 2, 5):
        schedule = get_lr_scheduler("cos", 1e-4, 1e-6, total)
        assert all(1e-6 <= schedule(e) <= 1e-4 for e in range(total))


def test_step_schedule_hand_computed_values():
    schedule = get_lr_scheduler("step", 1e-4, 1e-6, 100)
    assert all(schedule(e) == pytest.approx(1e-4) for e in range(10))
    assert all(schedule(e) == pytest.approx(5.99e-5, rel=1e-3) for e in range(10, 20))
    assert all(schedule(e) == pytest.approx(1e-6) for e in range(90, 100))
    assert type(schedule(0)) is float


def test_step_schedule_rejects_too_few_epochs_at_construction():
    with pytest.raises(ValueError, match=r"step_size must above 1\..*step_num \(10\)"):
        get_lr_scheduler("step", 1e-4, 1e-6, 9)
    get_lr_scheduler("step", 1e-4, 1e-6, 10)


@pytest.mark.parametrize("lr, min_lr", [(0.0, 1e-6), (1e-4, -1e-6)])
def test_step_schedule_rejects_bad_learning_rates(lr, min_lr):
    with pytest.raises(ValueError, match="lr > 0"):
        get_lr_scheduler("step", lr, min_lr, 100)


def test_unknown_decay_type_is_rejected():
    with pytest.raises(ValueError, match=r"'cos', 'step'"):
        get_lr_scheduler("linear", 1e-4, 1e-6, 100)


def test_schedules_pickle():
    for decay_type in ("cos", "step"):
        schedule = get_lr_scheduler(decay_type, 1e-4, 1e-6, 100)
        restored = pickle.loads(pickle.dumps(schedule))
        assert [restored(e) for e in range(100)] == [schedule(e) for e in range(100)]


def test_fit_learning_rates_pins_adam():
    for batch_size, init_lr in [(2, 1e-4), (16, 1e-3), (64, 1e-5)]:
        init_fit, min_fit = fit_learning_rates(batch_size, init_lr, init_lr * 0.01, "adam")
        assert init_fit == pytest.approx(1e-4)
        assert min_fit == pytest.approx(1e-6)


def test_fit_learning_rates_scales_sgd():
    assert fit_learning_rates(2, 1e-2, 1e-4, "sgd") == pytest.approx((1.25e-3, 1.25e-5))
    assert fit_learning_rates(64, 1e-1, 1e-3, "sgd") == pytest.approx((1e-1, 1e-3))
    assert fit_learning_rates(1, 1e-3, 1e-5, "sgd") == pytest.approx((5e-4, 5e-6))


@pytest.mark.parametrize(
    "call",
    [
        lambda: fit_learning_rates(2, 1e-4, 1e-6, "rmsprop"),
        lambda: make_optimizer("rmsprop", 1e-4, 0.9),
    ],
)
def test_unknown_optimizer_type_is_rejected(call):
    with pytest.raises(ValueError, match=r"'adam', 'sgd'"):
        call()


def test_keras_scheduler_callback_applies_schedule():
    optimizer = make_optimizer("adam", 1.0, 0.9)
    callback = keras.callbacks.LearningRateScheduler(get_lr_scheduler("cos", 1e-4, 1e-6, 100))
    callback.set_model(SimpleNamespace(optimizer=optimizer))
    callback.on_epoch_begin(49)
    assert float(optimizer.learning_rate) == pytest.approx(5.05e-5, rel=1e-5)
