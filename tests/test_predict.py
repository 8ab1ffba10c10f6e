"""predict.py end to end: every mode on tiny inputs, headless, with a random-weight model."""

import io
import re
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import predict
from utils.predict_modes import MODES
from utils.settings import PREDICT_MODES

MODEL = ["--model_path", "", "--num_classes", "3", "--input_shape", "64", "64"]


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


def test_predict_mode_asks_again_then_saves(tmp_path, monkeypatch, capsys):
    Image.new("RGB", (50, 30), (200, 10, 10)).save(tmp_path / "good.jpg")
    answers = f"{tmp_path / 'missing.jpg'}\n{tmp_path / 'good.jpg'}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))  # then EOF ends the loop
    out_dir = tmp_path / "out"
    predict.main([*MODEL, "--dir_save_path", str(out_dir), "--count", "True",
                  "--name_classes", "background", "cat", "dog"])
    printed = capsys.readouterr().out
    assert printed.count("Input image filename:") == 3
    assert "Open Error! Try again!" in printed
    assert "|                      Key |           Value |           Ratio|" in printed
    assert Image.open(out_dir / "good.jpg").size == (50, 30)
    assert f"result saved to {out_dir / 'good.jpg'}" in printed


def test_empty_line_exits(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\nnever-read.jpg\n"))
    predict.main(MODEL)
    assert capsys.readouterr().out.count("Input image filename:") == 1


def test_video_mode_saves_headless(tmp_path, capsys):
    source, saved = str(tmp_path / "in.avi"), str(tmp_path / "out.avi")
    writer = cv2.VideoWriter(source, cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 48))
    for i in range(3):
        writer.write(np.full((48, 80, 3), 60 * i, np.uint8))
    writer.release()

    predict.main([*MODEL, "--mode", "video", "--video_path", source,
                  "--video_save_path", saved])
    printed = capsys.readouterr().out
    assert printed.count("fps= ") == 3
    assert "Video Detection Done!" in printed
    assert f"Save processed video to the path :{saved}" in printed
    capture = cv2.VideoCapture(saved)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, frame = capture.read()
    assert ok and frame.shape == (48, 80, 3)


def test_video_mode_errors(tmp_path, user_error):
    assert "--video_save_path out.avi" in user_error(predict.main, [*MODEL, "--mode", "video"])
    message = user_error(predict.main, [
        *MODEL, "--mode", "video", "--video_path", str(tmp_path / "nothing.avi"),
        "--video_save_path", str(tmp_path / "out.avi")])
    assert re.search(r"Cannot read the camera or video .*nothing\.avi", message)


def test_fps_mode(tmp_path, capsys):
    Image.new("RGB", (90, 45)).save(tmp_path / "street.jpg")
    predict.main([*MODEL, "--mode", "fps", "--test_interval", "2",
                  "--fps_image_path", str(tmp_path / "street.jpg")])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    seconds, rest = line.split(" seconds, ")
    fps = float(rest.split("FPS")[0])
    assert rest.endswith(" ms)") and "FPS, @batch_size 1" in rest
    assert fps == pytest.approx(1 / float(seconds))


def test_dir_predict_handles_every_format(tmp_path):
    origin, out = tmp_path / "img", tmp_path / "img_out"
    origin.mkdir()
    Image.new("RGB", (40, 30), "red").save(origin / "a.jpg")
    Image.new("L", (33, 20), 90).save(origin / "grey.png")
    Image.new("RGBA", (25, 25), (0, 0, 255, 80)).save(origin / "alpha.PNG")
    Image.new("RGB", (20, 41), "green").save(origin / "c.bmp")
    Image.fromarray(np.full((16, 24), 40000, np.uint16)).save(origin / "deep.tif")
    (origin / "notes.txt").write_text("not an image")

    predict.main([*MODEL, "--mode", "dir_predict", "--dir_origin_path", str(origin),
                  "--dir_save_path", str(out)])
    sizes = {"a.jpg": (40, 30), "grey.png": (33, 20), "alpha.PNG": (25, 25),
             "c.bmp": (20, 41), "deep.tif": (24, 16)}
    assert sorted(p.name for p in out.iterdir()) == sorted(sizes)
    for name, size in sizes.items():
        result = Image.open(out / name)
        assert result.mode == "RGB" and result.size == size


def test_unknown_mode_and_parameter(user_error):
    message = user_error(predict.main, ["--mode", "segment"])
    assert "mode = 'segment' is not supported" in message
    assert "'predict', 'video', 'fps', 'dir_predict', 'export_onnx', 'predict_onnx'" in message
    assert "Did you mean --mix_type?" in user_error(predict.main, ["--mixtype", "1"])
    assert "mix_type = 3 is not supported" in user_error(predict.main, ["--mix_type", "3"])


def test_every_mode_has_a_runner():
    assert tuple(MODES) == PREDICT_MODES


def test_help_lists_predictor_settings(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "Predictor (unet.py):" in printed
    words = " ".join(printed.split())  # help lines are wrapped
    assert "--mix_type" in words and "2 keeps the foreground pixels" in words
    assert "--video_fps" in printed and "--onnx_save_path" in printed
    assert max(len(line) for line in printed.splitlines()) <= 100
