"""The predictor (`from unet import Unet`): parity with the original pipeline, palette, drawing,
count, FPS."""

import colorsys

import cv2
import numpy as np
import pytest
from PIL import Image

import utils.predictor
from nets.unet import Unet as build_unet
from unet import Unet
from utils.predictor import class_colours

# The original predictor's colours for the first 21 classes.
VOC_PALETTE = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
]

H, W, C = 64, 96, 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 3-class model with a sharpened head (so classes vary), saved as .weights.h5."""
    model = build_unet((H, W, 3), C, "vgg")
    head = model.get_layer("final_conv")
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(1)
    head.set_weights([rng.normal(0, 3.0, kernel.shape).astype(np.float32), bias])
    path = tmp_path_factory.mktemp("weights") / "model.weights.h5"
    model.save_weights(path)
    return model, str(path)


def random_image(size, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # smooth, photo-like content
    return Image.fromarray(small).resize(size, Image.BILINEAR)


def reference_classes(model, image):
    """The original detect_image steps with model.predict, written from scratch."""
    image = image.convert("RGB")
    iw, ih = image.size
    scale = min(W / iw, H / ih)
    nw, nh = int(iw * scale), int(ih * scale)
    boxed = Image.new("RGB", (W, H), (128, 128, 128))
    boxed.paste(image.resize((nw, nh), Image.BICUBIC), ((W - nw) // 2, (H - nh) // 2))
    x = np.array(boxed, np.float32) / 127.5 - 1
    pr = model.predict(x[None], verbose=0)[0]
    pr = pr[(H - nh) // 2 : (H - nh) // 2 + nh, (W - nw) // 2 : (W - nw) // 2 + nw]
    return cv2.resize(pr, (iw, ih), interpolation=cv2.INTER_LINEAR).argmax(-1)


def test_parity_with_original_pipeline(checkpoint, capsys):
    model, path = checkpoint
    unet = Unet(model_path=path, num_classes=C, input_shape=[H, W], mix_type=1)
    printed = capsys.readouterr().out
    assert f"{path} model loaded." in printed
    assert "|               model_path |" in printed and path[-30:] in printed  # effective config

    images = [random_image((70, 50), 1), random_image((45, 90), 2), random_image((96, 64), 3)]
    for image in images:
        expected = reference_classes(model, image)
        assert len(np.unique(expected)) > 1  # a meaningful comparison
        got = np.asarray(unet.get_miou_png(image))
        assert got.shape == (image.height, image.width)
        assert np.mean(got == expected) >= 0.999
        coloured = np.asarray(unet.detect_image(image))
        assert np.mean(np.all(coloured == np.array(VOC_PALETTE[:C])[expected], -1)) >= 0.999

    batched = unet.get_miou_pngs(images)
    for image, png in zip(images, batched, strict=True):
        assert png.mode == "L" and np.array_equal(np.asarray(png), unet.get_miou_png(image))



def test_one_trace_for_every_image_and_batch_size(checkpoint, monkeypatch):
    model, _ = checkpoint
    traces = []
    call = model.call
    monkeypatch.setattr(model, "call", lambda *a, **k: traces.append(1) or call(*a, **k))
    unet = Unet(model=model, num_classes=C, input_shape=[H, W])
    unet.get_miou_png(random_image((70, 50), 1))
    unet.get_miou_pngs([random_image((45, 90), 2), random_image((96, 64), 3)])
    unet.get_miou_png(random_image((33, 20), 4))
    assert len(traces) == 1  # the Python body runs only while tracing


def test_wrapped_model_needs_matching_shape(checkpoint):
    model, _ = checkpoint
    assert Unet(model=model, num_classes=C, input_shape=[H, W]).model is model
    with pytest.raises(ValueError, match="num_classes"):
        Unet(model=model, num_classes=4, input_shape=[H, W])


def test_checkpoint_class_count_mismatch_names_both(checkpoint):
    _, path = checkpoint
    with pytest.raises(ValueError, match=r"3 classes.*4"):
        Unet(model_path=path, num_classes=4, input_shape=[H, W])


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5.*logs/"):
        Unet(model_path=str(tmp_path / "nothere.h5"), num_classes=C, input_shape=[H, W])
    with pytest.raises(TypeError, match="blend"):
        Unet(model_path="", blend=True)
    with pytest.raises(ValueError, match="mix_type"):
        Unet(model_path="", mix_type=3)
    with pytest.raises(ValueError, match="64"):
        Unet(model_path="", input_shape=[60, 96])
    with pytest.raises(ValueError, match="precision"):
        Unet(model_path="", precision="float8")


def test_palette():
    assert np.array_equal(class_colours(21), np.array(VOC_PALETTE, np.uint8))
    assert class_colours(3).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    colours = class_colours(25)  # beyond 21 classes: HSV (i/C, 1, 1)
    assert colours.shape == (25, 3)
    assert colours[0].tolist() == [255, 0, 0]
    assert colours[5].tolist() == [203, 255, 0]  # hsv(0.2, 1, 1) = (0.8 - 1e-16, 1, 0), int()
    r, g, b = colorsys.hsv_to_rgb(17 / 25, 1, 1)
    assert colours[17].tolist() == [int(r * 255), int(g * 255), int(b * 255)]


def left_half_is_class_1(batch):
    """A fake model: class 1 on the left half of the network input, class 0 on the right."""
    probs = np.zeros((len(batch), H, W, C), np.float32)
    probs[:, :, : W // 2, 1] = 1
    probs[:, :, W // 2 :, 0] = 1
    return probs


@pytest.fixture
def image():
    """An image exactly the network size, so the class map is the fake model's, unscaled."""
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))


@pytest.mark.parametrize("mix_type", [0, 1, 2])
def test_mix_types(image, mix_type):
    unet = Unet(forward=left_half_is_class_1, num_classes=C, input_shape=[H, W],
                mix_type=mix_type)
    original = np.asarray(image).astype(np.float64)
    result = np.asarray(unet.detect_image(image)).astype(np.float64)
    colour = np.zeros((H, W, 3))
    colour[:, : W // 2] = (128, 0, 0)
    expected = {0: 0.3 * original + 0.7 * colour, 1: colour,
                2: np.where(colour.any(-1, keepdims=True), original, 0)}[mix_type]
    assert result.shape == (H, W, 3)
    assert np.abs(result - expected).max() <= 1  # PIL rounds the blend


def test_count_table(image, capsys):
    unet = Unet(forward=left_half_is_class_1, num_classes=C, input_shape=[H, W])
    half = H * W // 2
    unet.detect_image(image, count=True, name_classes=["background", "cat", "dog"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "-" * 63
    assert lines[1] == "|%25s | %15s | %15s|" % ("Key", "Value", "Ratio")
    assert "|               background |            3072 |          50.00%|" in lines
    assert "|                      cat |            3072 |          50.00%|" in lines
    assert not any("dog" in line for line in lines)  # classes with no pixels are not listed
    assert lines[-1] == f"classes_nums: [{half}. {half}.    0.]"

    unet.detect_image(image, count=True)  # no names: the class indices
    out = capsys.readouterr().out
    assert "|                        1 |            3072 |          50.00%|" in out
    with pytest.raises(ValueError, match="2 names but num_classes is 3"):
        unet.detect_image(image, count=True, name_classes=["a", "b"])


def test_get_fps_on_non_square_input():
    calls = []

    def forward(batch):
        calls.append(batch.shape)
        return left_half_is_class_1(batch)

    unet = Unet(forward=forward, num_classes=C, input_shape=[H, W])
    seconds = unet.get_FPS(random_image((45, 90)), test_interval=3)
    assert seconds > 0
    assert calls == [(1, H, W, 3)] * 4  # one warm-up, then the timed runs


def test_get_fps_with_the_keras_model():
    unet = Unet(model_path="", num_classes=C, input_shape=[H, W])
    assert 0 < unet.get_FPS(random_image((70, 50)), test_interval=2) < 60


def test_bfloat16_precision_keeps_float32_probabilities(checkpoint, monkeypatch, capsys):
    model, path = checkpoint
    monkeypatch.setattr(utils.predictor, "cpu_has_bfloat16", lambda: False)
    monkeypatch.setattr(utils.predictor, "accelerators", list)
    unet = Unet(model_path=path, num_classes=C, input_shape=[H, W], precision="bfloat16")
    assert "no bfloat16 instructions" in capsys.readouterr().out  # emulated: slower, say so
    x = np.random.default_rng(0).uniform(-1, 1, (1, H, W, 3)).astype(np.float32)
    probs = unet.forward(x)
    assert unet.model.get_layer("up1_conv1").compute_dtype == "bfloat16"
    assert probs.dtype == np.float32
    reference = model.predict(x, verbose=0)
    assert np.mean(probs.argmax(-1) == reference.argmax(-1)) > 0.9


def test_loaded_weights_are_frozen_once_the_calls_took_freeze_after_s(checkpoint, monkeypatch):
    """Freezing costs seconds: a predictor reads its variables until its calls have taken
    FREEZE_AFTER_S, then runs a graph with the weights as constants (the same output)."""
    _, path = checkpoint
    x = np.random.default_rng(5).uniform(-1, 1, (1, H, W, 3)).astype(np.float32)
    unet = Unet(model_path=path, num_classes=C, input_shape=[H, W])
    live = unet.forward(x)
    assert not unet.forward.frozen  # a few calls: never kept waiting for the freeze

    monkeypatch.setattr(unet.forward, "_freeze_after_s", 0.0)  # as if they had taken 10 s
    np.testing.assert_allclose(unet.forward(x), live, atol=1e-5)
    assert unet.forward.frozen
    head = unet.model.get_layer("final_conv")
    head.set_weights([-w for w in head.get_weights()])
    np.testing.assert_allclose(unet.forward(x), live, atol=1e-5)  # constants, not variables

    timed = Unet(model_path=path, num_classes=C, input_shape=[H, W])
    assert timed.get_FPS(random_image((70, 50)), test_interval=1) > 0
    assert timed.forward.frozen  # FPS is timed in the steady state
    wrapped = Unet(model=unet.model, num_classes=C, input_shape=[H, W])
    wrapped.settle()
    assert not wrapped.forward.frozen  # training's model is read live, always


def test_wrapped_model_is_read_live_while_loaded_weights_are_frozen(checkpoint):
    """Training's evaluation wraps a model whose weights change between epochs; a predictor
    built from a file freezes its weights into the graph (faster on CPU), here at once."""
    model, path = checkpoint
    live = Unet(model=model, num_classes=C, input_shape=[H, W])
    frozen = Unet(model_path=path, num_classes=C, input_shape=[H, W])
    frozen.settle()
    assert frozen.forward.frozen
    x = np.random.default_rng(4).uniform(-1, 1, (2, H, W, 3)).astype(np.float32)
    np.testing.assert_allclose(frozen.forward(x), live.forward(x), atol=1e-5)

    head = model.get_layer("final_conv")
    kernel, bias = head.get_weights()
    head.set_weights([-kernel, bias])
    try:
        np.testing.assert_allclose(live.forward(x), model.predict(x, verbose=0), atol=1e-5)
        assert np.mean(live.forward(x).argmax(-1) == frozen.forward(x).argmax(-1)) < 0.5
    finally:
        head.set_weights([kernel, bias])
