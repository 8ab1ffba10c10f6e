"""Weight loading: legacy Keras 2 layouts written here with h5py, ImageNet notop, own files."""

import os
import re

import h5py
import keras
import numpy as np
import pytest

from nets.unet import Unet, decoder_conv_names
from utils.weights import load_weights, save_model_weights, save_weights_atomic

SHAPE = (64, 64, 3)
CAFFE_BRANCH = {"0": "1", "1": "2a", "2": "2b", "3": "2c"}


def randomize(model: keras.Model, seed: int) -> keras.Model:
    """Give every weight (biases and BN statistics too) distinct values, so misplacement shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([
            rng.uniform(0.5, 1.5, w.shape) if w.name in ("gamma", "moving_variance")
            else rng.normal(0.0, 0.05, w.shape)
            for w in layer.weights
        ])
    return model


def write_legacy(path, model: keras.Model, rename=lambda name: name, keras_version="2.1.5"):
    """Write `model` as Keras 2 `save_weights` did: root `layer_names`, one group per layer."""
    names = [rename(layer.name) for layer in model.layers]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras_version.encode()
        for layer, name in zip(model.layers, names, strict=True):
            group = f.create_group(name)
            weight_names = [f"{name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for weight_name, value in zip(weight_names, layer.get_weights(), strict=True):
                group.create_dataset(weight_name, data=value)
    return path


def decoder_renamer(backbone: str, first: int):
    """Auto names of the decoder convs: first=0 gives conv2d, conv2d_1 ...; first=1 conv2d_1 ..."""
    auto = {}
    for i, name in enumerate(decoder_conv_names(backbone), start=first):
        auto[name] = "conv2d" if i == 0 else f"conv2d_{i}"
    return lambda name: auto.get(name, name)


def caffe_name(name: str) -> str:
    """keras.applications ResNet50 names -> the Caffe-style names of the published notop file."""
    if name in ("conv1_conv", "conv1_bn"):
        return {"conv1_conv": "conv1", "conv1_bn": "bn_conv1"}[name]
    match = re.fullmatch(r"conv(\d)_block(\d)_(\d)_(conv|bn)", name)
    if not match:
        return name
    stage, block, branch, kind = match.groups()
    prefix = "res" if kind == "conv" else "bn"
    return f"{prefix}{stage}{'abcdef'[int(block) - 1]}_branch{CAFFE_BRANCH[branch]}"


def assert_same_weights(target: keras.Model, source: keras.Model, names=None):
    names = names or [layer.name for layer in target.layers if layer.weights]
    for name in names:
        for got, want in zip(target.get_layer(name).get_weights(),
                             source.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)


def predict(model: keras.Model) -> np.ndarray:
    x = np.random.default_rng(0).uniform(-1, 1, (1, *SHAPE)).astype("float32")
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def vgg_source():
    return randomize(Unet(SHAPE, 3, "vgg"), seed=1)


@pytest.fixture(scope="module")
def resnet_source():
    return randomize(Unet(SHAPE, 3, "resnet50"), seed=2)


@pytest.mark.parametrize("first, style", [(0, "tf.keras"), (1, "standalone Keras 2.1.5")])
def test_legacy_vgg_checkpoint_maps_auto_named_decoder(tmp_path, vgg_source, first, style):
    path = write_legacy(tmp_path / "unet_vgg_voc.h5", vgg_source, decoder_renamer("vgg", first))
    target = Unet(SHAPE, 3, "vgg")
    report = load_weights(target, path, "vgg", strict=True)
    assert len(report.loaded) == 22 and report.skipped == {}
    assert report.source_classes == 3
    first_name = "conv2d" if first == 0 else "conv2d_1"
    assert any(f"{first_name}..conv2d_{first + 8}" in note for note in report.notes), style
    assert_same_weights(target, vgg_source)
    np.testing.assert_allclose(predict(target), predict(vgg_source), rtol=1e-5, atol=1e-6)


def test_legacy_resnet_checkpoint_with_caffe_names(tmp_path, resnet_source, capsys):
    def rename(name):
        return decoder_renamer("resnet50", 1)(caffe_name(name))

    path = write_legacy(tmp_path / "unet_resnet_voc.h5", resnet_source, rename)
    with h5py.File(path) as f:  # the file really uses the old names
        assert {"bn_conv1", "res2a_branch1", "bn5c_branch2c", "conv2d_11"} <= set(f.keys())
        assert "conv1_conv" not in f
    target = Unet(SHAPE, 3, "resnet50")
    report = load_weights(target, path, "resnet50", strict=True)
    assert len(report.loaded) == 117 and report.skipped == {}
    assert_same_weights(target, resnet_source)
    np.testing.assert_allclose(predict(target), predict(resnet_source), rtol=1e-4, atol=1e-5)
    printed = capsys.readouterr().out
    assert "Loaded 117 of 117 layers" in printed and "Caffe-style" in printed
    assert "conv2d_1..conv2d_11 mapped to up4_conv1..final_conv" in printed


def test_legacy_full_model_file_with_model_weights_group(tmp_path, vgg_source):
    flat = write_legacy(tmp_path / "flat.h5", vgg_source, decoder_renamer("vgg", 0))
    path = tmp_path / "full_model.h5"
    with h5py.File(path, "w") as f, h5py.File(flat) as src:
        src.copy(src["/"], f, "model_weights")
        f["model_weights"].attrs.update(src.attrs)
    target = Unet(SHAPE, 3, "vgg")
    assert len(load_weights(target, path, "vgg", strict=True).loaded) == 22
    assert_same_weights(target, vgg_source)


def test_unknown_decoder_names_fall_back_to_shape_order(tmp_path, vgg_source):
    decoder = decoder_conv_names("vgg")
    path = write_legacy(tmp_path / "renamed.h5", vgg_source,
                        lambda n: f"dec_{decoder.index(n)}" if n in decoder else n)
    target = Unet(SHAPE, 3, "vgg")
    report = load_weights(target, path, "vgg", strict=True)
    assert len(report.loaded) == 22
    assert report.notes[-1].startswith(
        "matched by weight shapes and order: dec_0 -> up4_conv1, dec_1 -> up4_conv2")
    assert_same_weights(target, vgg_source)


def test_head_mismatch_skipped_when_training_and_raised_when_predicting(tmp_path):
    source = randomize(Unet(SHAPE, 5, "vgg"), seed=3)
    path = write_legacy(tmp_path / "voc21.h5", source, decoder_renamer("vgg", 1))
    target = Unet(SHAPE, 3, "vgg")
    head_before = target.get_layer("final_conv").get_weights()

    report = load_weights(target, path, "vgg", strict=False)
    assert report.source_classes == 5
    assert report.skipped == {
        "final_conv": "checkpoint head has 5 classes, model has 3: head left random"}
    assert len(report.loaded) == 21
    assert_same_weights(target, source, [n for n in report.loaded])
    for got, before in zip(target.get_layer("final_conv").get_weights(), head_before,
                           strict=True):
        np.testing.assert_array_equal(got, before)

    with pytest.raises(ValueError, match="head has 5 classes, model has 3") as error:
        load_weights(Unet(SHAPE, 3, "vgg"), path, "vgg", strict=True)
    assert "num_classes = 5" in str(error.value)


def test_imagenet_vgg_notop_loads_backbone_only(tmp_path, capsys):
    app = randomize(keras.applications.VGG16(weights=None, include_top=False,
                                             input_shape=SHAPE), seed=4)
    path = write_legacy(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", app,
                        keras_version="2.2.4")
    target = Unet(SHAPE, 3, "vgg")
    report = load_weights(target, path, "vgg")
    backbone = [layer.name for layer in app.layers if layer.weights]
    assert report.loaded == backbone and len(backbone) == 13
    assert set(report.skipped) == set(decoder_conv_names("vgg"))
    assert report.source_classes is None
    assert_same_weights(target, app, backbone)
    assert "skipped up4_conv1, up4_conv2" in capsys.readouterr().out

    with pytest.raises(ValueError, match="not in file"):
        load_weights(Unet(SHAPE, 3, "vgg"), path, "vgg", strict=True)


def test_imagenet_resnet50_notop_with_caffe_names(tmp_path):
    app = randomize(keras.applications.ResNet50(weights=None, include_top=False,
                                                input_shape=SHAPE), seed=5)
    path = write_legacy(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", app,
                        caffe_name)
    target = Unet(SHAPE, 3, "resnet50")
    report = load_weights(target, path, "resnet50")
    backbone = [layer.name for layer in app.layers if layer.weights]
    assert len(report.loaded) == len(backbone) == 106
    assert_same_weights(target, app, backbone)
    assert set(report.skipped) == set(decoder_conv_names("resnet50"))


@pytest.mark.parametrize("backbone", ["vgg", "resnet50"])
def test_own_keras3_file_round_trip(tmp_path, vgg_source, resnet_source, backbone):
    source = vgg_source if backbone == "vgg" else resnet_source
    path = tmp_path / "best_epoch_weights.weights.h5"
    save_weights_atomic(source, path)
    target = Unet(SHAPE, 3, backbone)
    report = load_weights(target, path, backbone, strict=True)
    assert len(report.loaded) == report.total and report.skipped == {}
    assert report.source_classes == 3
    assert_same_weights(target, source)
    np.testing.assert_allclose(predict(target), predict(source), rtol=1e-4, atol=1e-5)


def test_own_keras3_file_with_other_class_count(tmp_path, resnet_source):
    path = tmp_path / "ep005.weights.h5"
    save_weights_atomic(resnet_source, path)
    target = Unet(SHAPE, 4, "resnet50")
    report = load_weights(target, path, "resnet50")
    assert report.skipped == {
        "final_conv": "checkpoint head has 3 classes, model has 4: head left random"}
    assert len(report.loaded) == 116
    assert_same_weights(target, resnet_source, report.loaded)
    with pytest.raises(ValueError, match="head has 3 classes, model has 4"):
        load_weights(target, path, "resnet50", strict=True)


def test_wrong_backbone_is_named(tmp_path, resnet_source, vgg_source):
    path = write_legacy(tmp_path / "resnet.h5", resnet_source)
    with pytest.raises(ValueError, match="holds resnet50 weights but backbone = 'vgg'"):
        load_weights(Unet(SHAPE, 3, "vgg"), path, "vgg")
    path = tmp_path / "vgg.weights.h5"
    save_weights_atomic(vgg_source, path)
    with pytest.raises(ValueError, match="holds vgg weights but backbone = 'resnet50'"):
        load_weights(Unet(SHAPE, 3, "resnet50"), path, "resnet50")


def test_missing_file_names_path_and_how_to_get_it(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5") as error:
        load_weights(Unet(SHAPE, 3, "vgg"), path, "vgg")
    assert "`python -m utils.downloads` lists the released weights" in str(error.value)
    assert "logs/" in str(error.value)
    released = tmp_path / "unet_vgg_voc.h5"
    with pytest.raises(FileNotFoundError) as error:
        load_weights(Unet(SHAPE, 3, "vgg"), released, "vgg")
    assert "download it with `python -m utils.downloads --weights unet_vgg_voc`" in str(
        error.value)


def test_not_hdf5_and_truncated_files_are_named(tmp_path, vgg_source):
    model = Unet(SHAPE, 3, "vgg")
    text = tmp_path / "notes.h5"
    text.write_text("these are not weights")
    with pytest.raises(ValueError, match="notes.h5"):
        load_weights(model, text, "vgg")

    full = tmp_path / "full.weights.h5"
    save_weights_atomic(vgg_source, full)
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.weights.h5.*truncated or not a weights file"):
        load_weights(model, truncated, "vgg")

    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="empty.h5: HDF5 file without Keras weights"):
        load_weights(model, empty, "vgg")


def test_save_weights_atomic_keeps_previous_file_on_failure(tmp_path, vgg_source, monkeypatch):
    path = tmp_path / "last_epoch_weights.weights.h5"
    save_weights_atomic(vgg_source, path)
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(before[:1000])  # half a file, then the "disk" fails
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", crash)
    with pytest.raises(OSError, match="No space left"):
        save_weights_atomic(vgg_source, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_weights_atomic_requires_keras3_suffix(tmp_path, vgg_source):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        save_weights_atomic(vgg_source, tmp_path / "model.h5")


def test_weights_files_hold_the_weights_only_with_the_usual_permissions(tmp_path):
    model = Unet(SHAPE, 3, "vgg")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((2, *SHAPE), np.float32), np.zeros((2, *SHAPE[:2], 3), np.float32),
              verbose=0)
    full, lean = tmp_path / "full.weights.h5", tmp_path / "lean.weights.h5"
    model.save_weights(full)  # Keras' own: the Adam moments come along
    mask = os.umask(0o027)
    try:
        save_weights_atomic(model, lean)
    finally:
        os.umask(mask)
    assert lean.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    with h5py.File(lean) as f:
        assert "optimizer" not in f
    size = 4 * model.count_params()
    assert abs(lean.stat().st_size - size) < 0.05 * size
    assert full.stat().st_size > 2.5 * size
    restored = Unet(SHAPE, 3, "vgg")
    restored.load_weights(lean)
    for a, b in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    save_model_weights(model, tmp_path / "plain.weights.h5")
    assert (tmp_path / "plain.weights.h5").stat().st_size == lean.stat().st_size
