"""The parameter-block loader: defaults, overrides, derived values, errors and --help."""

import numpy as np
import pytest

from utils.config import ConfigError, load_config, parse_value, read_parameter_block

SCRIPT = '''"""A script for tests.

Its second paragraph."""
import os
import numpy as np

# ---- Model ----------------------------------------------------------------------------
# How the network is built.

# number of classes + 1
num_classes = 21
backbone = "vgg"  # vgg or resnet50
input_shape = [512, 512]

# ---- Learning rate --------------------------------------------------------------------
Init_lr = 1e-4
Min_lr = Init_lr * 0.01  # follows Init_lr, 1% of it
Freeze_Train = True
cls_weights = np.ones([num_classes], np.float32)
model_path = "model_data/unet_vgg_voc.h5"
video_path: int | str = 0
name_classes = ["background", "cat"]
limit: int | None = None


def main():
    pass

ignored_after_def = 1
'''

INCLUDED = '''# ---- Predictor ----
# 0 blend, 1 colour only, 2 cut-out
mix_type = 0
num_classes = 99
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def test_defaults_are_the_block(script):
    cfg = load_config(script, [])
    assert list(vars(cfg)) == ["num_classes", "backbone", "input_shape", "Init_lr", "Min_lr",
                               "Freeze_Train", "cls_weights", "model_path", "video_path",
                               "name_classes", "limit"]
    assert cfg.num_classes == 21 and cfg.backbone == "vgg" and cfg.input_shape == [512, 512]
    assert cfg.Min_lr == pytest.approx(1e-6)
    assert cfg.cls_weights.shape == (21,)


def test_overrides_read_like_python_literals(script):
    cfg = load_config(script, ["--num_classes", "3", "--input_shape", "256", "320",
                               "--Init_lr", "1e-2", "--Freeze_Train", "False", "--model_path", "",
                               "--name_classes", "bg", "1", "--video_path", "clip.mp4",
                               "--backbone=resnet50", "--limit", "4"])
    assert cfg.num_classes == 3
    assert cfg.input_shape == [256, 320]
    assert cfg.Init_lr == 0.01 and cfg.Min_lr == pytest.approx(1e-4)  # derived default follows
    assert cfg.Freeze_Train is False
    assert cfg.model_path == ""
    assert cfg.name_classes == ["bg", "1"]  # a list of names stays text
    assert cfg.video_path == "clip.mp4" and cfg.limit == 4
    assert cfg.backbone == "resnet50"
    np.testing.assert_array_equal(cfg.cls_weights, np.ones(3, np.float32))  # follows num_classes
    assert load_config(script, ["--Freeze_Train"]).Freeze_Train is True  # a bare flag is True
    assert load_config(script, ["--video_path", "2"]).video_path == 2


def test_config_is_read_only(script):
    cfg = load_config(script, [])
    with pytest.raises(AttributeError, match="read-only"):
        cfg.num_classes = 3
    assert cfg.replace(num_classes=3).num_classes == 3 and cfg.num_classes == 21


def test_unknown_name_lists_valid_ones(script):
    with pytest.raises(ConfigError) as error:
        load_config(script, ["--num_clases", "3"])
    message = str(error.value)
    assert "--num_clases" in message and "Did you mean --num_classes?" in message
    assert "--Freeze_Train" in message and "--cls_weights" in message
    assert "ignored_after_def" not in message
    with pytest.raises(ConfigError, match="unknown parameter --num"):
        load_config(script, ["--num", "3"])  # no abbreviations


@pytest.mark.parametrize("argv, message", [
    (["--Freeze_Train", "yes"], "--Freeze_Train: expected True or False, got 'yes'"),
    (["--num_classes", "x"], "--num_classes: expected a number, got 'x'"),
    (["--input_shape", "a", "b"], "--input_shape: expected a number, got 'a'"),
    (["--limit", "x"], "--limit: expected None or int, got 'x'"),
    (["--num_classes", "2", "3"], "unexpected value '3'"),
    (["3"], "unexpected value '3'"),
    (["--input_shape"], "expected at least one argument"),
])
def test_bad_values_are_config_errors(script, argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(script, argv)


def test_help_is_grouped_by_section_with_types_and_defaults(script, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the help never gets wider than 100 columns
    with pytest.raises(SystemExit) as error:
        load_config(script, ["--help"])
    assert error.value.code == 0
    out = capsys.readouterr().out
    assert "A script for tests." in out and "Its second paragraph." in out
    model, learning = out.index("Model:"), out.index("Learning rate:")
    assert model < out.index("--num_classes INT") < out.index("--input_shape INT [INT ...]")
    assert out.index("--input_shape") < learning < out.index("--Init_lr FLOAT")
    assert "How the network is built." in out[model:learning]
    assert "number of classes + 1 (default: 21)" in out
    assert "(default: Init_lr * 0.01)" in out and "1% of it" in out
    assert "--video_path INT|TEXT" in out and "--Freeze_Train [{True,False}]" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_block_reading_rules(tmp_path):
    path = tmp_path / "block.py"
    path.write_text(
        "import os\n"
        "# ---- Phases ----\n"
        "# The section's introduction.\n"
        "\n"
        "# First epoch to run; above Freeze_Epoch it skips\n"
        "# the frozen phase.\n"
        "Init_Epoch = 0\n"
        "# -------------\n"
        "#   mode chooses what to compute.\n"
        "# -------------\n"
        "mode = 0\n"
        "x = [1,\n"
        "     2]  # a list\n"
        "path = os.sep\n")
    block = read_parameter_block(path)
    assert {p.name: p.help for p in block.parameters} == {
        "Init_Epoch": "First epoch to run; above Freeze_Epoch it skips the frozen phase.",
        "mode": "mode chooses what to compute.", "x": "a list", "path": ""}
    assert block.sections == {"Phases": "The section's introduction."}
    assert {p.section for p in block.parameters} == {"Phases"}
    assert load_config(path, []).path  # the import the block needs is run, others are not


def test_included_block_adds_parameters_the_script_lacks(script, tmp_path):
    (tmp_path / "included.py").write_text(INCLUDED)
    cfg = load_config(script, ["--mix_type", "2"], include=["included.py"])
    assert cfg.mix_type == 2
    assert cfg.num_classes == 21  # the script's own block wins over an included one


def test_parse_value_shapes_like_default():
    assert parse_value(["1", "2"], (0, 0)) == (1, 2)
    assert parse_value(["[1, 2]"], [0]) == [1, 2]
    assert parse_value(["3"], 0.5) == 3.0 and isinstance(parse_value(["3"], 0.5), float)
    assert parse_value(["0"], "text") == "0"
    assert parse_value(['""'], "x") == ""
    assert parse_value(["None"], None) is None
    assert parse_value(["[]"], [0]) == []
    assert parse_value(["2", "3"], np.ones(1, np.float32)).dtype == np.float32
