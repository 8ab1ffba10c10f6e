"""The parameter-block loader: defaults, overrides, derived values, errors and --help."""

import numpy as np
import pytest

from utils.config import (
    load_config,
    parse_value,
    read_dict_help,
    read_parameter_block,
    split_overrides,
)

SCRIPT = '''"""A script for tests."""
import numpy as np

#   number of classes + 1
num_classes = 21
backbone = "vgg"  # vgg or resnet50
input_shape = [512, 512]
Init_lr = 1e-4
Min_lr = Init_lr * 0.01  # follows Init_lr
Freeze_Train = True
cls_weights = np.ones([num_classes], np.float32)
model_path = "model_data/unet_vgg_voc.h5"
video_path = 0
name_classes = ["background", "cat"]


def main():
    pass

ignored_after_def = 1
'''

DEFAULTS = '''class Unet:
    _defaults = {
        "mix_type": 0,  # 0 blend, 1 colour only, 2 cut-out
    }
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def test_defaults_are_the_block(script):
    cfg = load_config(script, [])
    assert list(cfg.as_dict()) == ["num_classes", "backbone", "input_shape", "Init_lr", "Min_lr",
                                   "Freeze_Train", "cls_weights", "model_path", "video_path",
                                   "name_classes"]
    assert cfg.num_classes == 21 and cfg.backbone == "vgg" and cfg.input_shape == [512, 512]
    assert cfg.Min_lr == pytest.approx(1e-6)
    assert cfg.cls_weights.shape == (21,)


def test_overrides_read_like_python_literals(script):
    cfg = load_config(script, ["--num_classes", "3", "--input_shape", "256", "320",
                               "--Init_lr", "1e-2", "--Freeze_Train", "False", "--model_path", "",
                               "--name_classes", "bg", "cat", "dog", "--video_path", "clip.mp4",
                               "--backbone=resnet50"])
    assert cfg.num_classes == 3
    assert cfg.input_shape == [256, 320]
    assert cfg.Init_lr == 0.01 and cfg.Min_lr == pytest.approx(1e-4)  # derived default follows
    assert cfg.Freeze_Train is False
    assert cfg.model_path == ""
    assert cfg.name_classes == ["bg", "cat", "dog"]
    assert cfg.video_path == "clip.mp4"
    assert cfg.backbone == "resnet50"
    np.testing.assert_array_equal(cfg.cls_weights, np.ones(3, np.float32))  # follows num_classes


def test_unknown_name_lists_valid_ones(script):
    with pytest.raises(SystemExit) as error:
        load_config(script, ["--num_clases", "3"])
    message = str(error.value)
    assert "--num_clases" in message and "Did you mean --num_classes?" in message
    assert "--Freeze_Train" in message and "--cls_weights" in message
    assert "ignored_after_def" not in message


def test_bad_bool_and_arity_are_errors(script):
    with pytest.raises(SystemExit, match="--Freeze_Train: expected True or False"):
        load_config(script, ["--Freeze_Train", "yes"])
    with pytest.raises(SystemExit, match="--num_classes: expected one value, got 2"):
        load_config(script, ["--num_classes", "2", "3"])
    with pytest.raises(SystemExit, match="expected --name value pairs"):
        load_config(script, ["3"])


def test_help_is_generated_from_the_block(script, capsys):
    with pytest.raises(SystemExit) as error:
        load_config(script, ["--help"])
    assert error.value.code == 0
    out = capsys.readouterr().out
    assert "A script for tests." in out
    assert "--num_classes" in out and "number of classes + 1" in out and "[default: 21]" in out
    assert "vgg or resnet50" in out and "[default: Init_lr * 0.01]" in out


def test_help_takes_the_parameters_own_comment(tmp_path):
    path = tmp_path / "block.py"
    path.write_text(
        "# Two phases: a section introduction.\n"
        "# First epoch to run; above Freeze_Epoch it skips\n"
        "# the frozen phase.\n"
        "Init_Epoch = 0\n"
        "# ----------\n"
        "#   mode chooses what to compute.\n"
        "#   0: everything. 1: predictions only.\n"
        "# ----------\n"
        "mode = 0\n"
        "x = [1,\n"
        "     2]  # a list\n")
    help_text = {p.name: p.help for p in read_parameter_block(path)[0]}
    assert help_text == {
        "Init_Epoch": "First epoch to run; above Freeze_Epoch it skips the frozen phase.",
        "mode": "mode chooses what to compute. 0: everything. 1: predictions only.",
        "x": "a list"}
    with pytest.raises(SystemExit):
        load_config(path, ["--help"])


def test_extra_parameters_and_their_help(script, tmp_path):
    defaults = tmp_path / "defaults.py"
    defaults.write_text(DEFAULTS)
    help_text = read_dict_help(defaults, "_defaults")
    assert help_text == {"mix_type": "0 blend, 1 colour only, 2 cut-out"}
    cfg = load_config(script, ["--mix_type", "2"], extra={"mix_type": 0, "num_classes": 99},
                      extra_help=help_text)
    assert cfg.mix_type == 2
    assert cfg.num_classes == 21  # the script's own block wins over an extra of the same name


def test_parse_value_shapes_like_default():
    assert parse_value(["1", "2"], (0, 0)) == (1, 2)
    assert parse_value(["[1, 2]"], [0]) == [1, 2]
    assert parse_value(["3"], 0.5) == 3.0 and isinstance(parse_value(["3"], 0.5), float)
    assert parse_value(["0"], "text") == "0"
    assert parse_value(['""'], "x") == ""
    assert parse_value(["None"], None) is None
    assert split_overrides(["--a", "1", "-2", "--b=", "--c"]) == {"a": ["1", "-2"], "b": [""],
                                                                  "c": []}
