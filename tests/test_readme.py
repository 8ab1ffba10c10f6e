"""README cannot drift from the code: its commands run, its links resolve, its parameters exist.

Every command in README's ```bash blocks is either run here, in README order, inside a scratch
folder holding a tiny 2-class dataset (RUN: the extra `--name value` words appended to shrink it;
later words win), or listed in SKIP with the reason. They run in this process (`script.main`),
and commands with the same predictor settings share one built predictor, to stay fast; the ONNX
export runs in a process of its own, because tf2onnx needs gigabytes while it converts.
A command in neither list, or a list entry no longer in README, fails the test.
`python <script>.py --name ...` anywhere in README (inline code and skipped commands included)
must name parameters the script has.
"""

import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from utils.cli import run as run_main
from utils.config import read_parameter_block
from utils.demo_data import write_demo_dataset
from utils.predictor import Predictor
from utils.utils import list_images

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELLS = ("bash", "sh", "shell")
SCRIPTS = ["train.py", "predict.py", "unet.py", "get_miou.py", "voc_annotation.py",
           "json_to_dataset.py", "summary.py", "docs/make_pictures.py", "benchmark.py",
           "utils/demo_data.py"]

TINY_TRAIN = ("--model_path", "", "--input_shape", "64", "64", "--Freeze_Epoch", "1",
              "--UnFreeze_Epoch", "1", "--Freeze_batch_size", "2", "--Unfreeze_batch_size", "2",
              "--eval_flag", "False")
TINY_MODEL = ("--input_shape", "64", "64")


@dataclass(frozen=True)
class Run:
    extra: tuple[str, ...] = ()  # appended to the README command (shrinks it)
    stdin: str = ""  # typed at the prompt (predict modes)
    creates: tuple[str, ...] = ()  # files the command must leave in the scratch folder
    own_process: bool = False  # run as `python script.py` rather than in this process


RUN = {
    "python -m utils.downloads": Run(),
    "python voc_annotation.py": Run(creates=("VOCdevkit/VOC2007/ImageSets/Segmentation/val.txt",)),
    "python voc_annotation.py --num_classes 3": Run(),
    "python voc_annotation.py --fix_labels True": Run(),
    "python train.py --help": Run(),
    "python train.py --num_classes 3 --backbone resnet50 --model_path "
    "model_data/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 --input_shape 256 256 "
    "--Freeze_Epoch 10 --UnFreeze_Epoch 50 --Freeze_batch_size 8 --Unfreeze_batch_size 4":
        Run(TINY_TRAIN, creates=("logs/best_epoch_weights.weights.h5",
                                 "logs/last_epoch_weights.weights.h5")),
    "python predict.py $M": Run(TINY_MODEL, stdin="img/demo_1.jpg\n\n",
                                creates=("img_out/demo_1.jpg",)),
    "python predict.py $M --mode dir_predict --dir_origin_path img/ --dir_save_path img_out/":
        Run(TINY_MODEL, creates=("img_out/demo_large.jpg",)),
    "python predict.py $M --mode video --video_path in.mp4 --video_save_path out.avi":
        Run(TINY_MODEL, creates=("out.avi",)),
    "python predict.py $M --mode fps --fps_image_path img/demo_large.jpg":
        Run((*TINY_MODEL, "--test_interval", "2")),
    "python predict.py $M --mode export_onnx": Run((*TINY_MODEL, "--simplify", "False"),
                                                   creates=("model_data/models.onnx",),
                                                   own_process=True),
    "python predict.py $M --mode predict_onnx": Run(TINY_MODEL, stdin="img/demo_2.jpg\n",
                                                    creates=("img_out/demo_2.jpg",)),
    "python get_miou.py $M --name_classes background cat dog":
        Run(TINY_MODEL, creates=("miou_out/metrics.json", "miou_out/mIoU.png")),
    "python summary.py --input_shape 256 256 --num_classes 3 --backbone resnet50":
        Run(("--input_shape", "64", "64")),
}
SKIP = {
    "make demo": "trains for minutes; the same scripts run here on tiny settings",
    "make test": "runs this test",
    "python predict.py $M --mode export_savedmodel":
        "tests/test_exports.py runs this mode through predict.py and checks the result",
    "python predict.py $M --mode export_tflite":
        "tests/test_exports.py runs this mode through predict.py and checks the result",
    "python -m utils.downloads --weights resnet50_imagenet":
        "downloads 95 MB; tests/test_downloads.py downloads from file:// URLs it writes",
    "python predict.py $M --mode video --video_path 0": "needs a webcam",
    "pip install \"tensorflow[and-cuda]==2.21.*\"": "installs packages",
    "nvidia-smi": "needs a GPU",
    "python train.py --train_gpu 0 1 --Freeze_batch_size 16 --Unfreeze_batch_size 8":
        "needs two GPUs",
    "python benchmark.py --quick": "minutes of timing; tests/test_benchmark.py covers it",
    "python benchmark.py": "about 12 minutes",
    "python benchmark.py --sections accuracy --model_path "
    "logs/demo/best_epoch_weights.weights.h5 --num_classes 4 --backbone resnet50 "
    "--eval_shape 64 96": "needs the demo checkpoint; tests/test_benchmark.py covers it",
    "tensorboard --logdir logs": "a server that runs until stopped",
    "export TF_CONFIG='{\"cluster\": {\"worker\": [\"node1:12345\", \"node2:12345\"]}, "
    "\"task\": {\"type\": \"worker\", \"index\": 0}}'": "needs two machines",
    "export TF_CONFIG='{\"cluster\": {\"worker\": [\"node1:12345\", \"node2:12345\"]}, "
    "\"task\": {\"type\": \"worker\", \"index\": 1}}'": "needs two machines",
    "python train.py --num_classes 3 --Freeze_batch_size 16 --Unfreeze_batch_size 16":
        "needs two machines; tests/test_distribute.py runs two workers on 127.0.0.1",
    "python benchmark.py --strategy": "minutes of timing; tests/test_benchmark.py covers it",
    "python benchmark.py --device gpu": "needs a GPU; tests/test_benchmark.py runs its code on "
                                        "the CPU",
}


def code_blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block of README."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.M | re.S)


def readme_commands() -> list[tuple[str, dict[str, str]]]:
    """Each shell command of the bash blocks (continuations joined, comments dropped, spaces
    normalised) with the shell variables set before it in its block."""
    commands = []
    for language, body in code_blocks():
        if language not in SHELLS:
            continue
        variables: dict[str, str] = {}
        for line in body.replace("\\\n", " ").splitlines():
            line = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
            assignment = re.fullmatch(r"(\w+)=(.*)", line)
            if assignment:
                variables[assignment[1]] = shlex.split(assignment[2])[0]
            elif line:
                commands.append((line, dict(variables)))
    return commands


def expand(command: str, variables: dict[str, str]) -> list[str]:
    for name, value in variables.items():
        command = command.replace(f"${name}", value)
    return shlex.split(command)


def valid_names(script: str) -> set[str]:
    """The `--name`s a script accepts: its parameter block's, plus unet.py's for the scripts
    that build the predictor."""
    path = ROOT / script
    if not path.is_file():
        return set()
    names = {p.name for p in read_parameter_block(path).parameters}
    if script in ("predict.py", "get_miou.py"):
        names |= {p.name for p in read_parameter_block(ROOT / "unet.py").parameters}
    return names


def python_commands() -> list[tuple[str, list[str]]]:
    """`python <script>.py ...` from code blocks and inline code, variables expanded."""
    found = [(cmd, expand(cmd, v)) for cmd, v in readme_commands()]
    inline = re.findall(r"(?<!`)`((?:python )?[\w/]+\.py --[^`]*)`(?!`)", README)
    found += [(cmd, expand(cmd if cmd.startswith("python") else f"python {cmd}", {}))
              for cmd in inline]
    return [(cmd, words) for cmd, words in found if len(words) > 1 and words[0] == "python"
            and re.fullmatch(r"[\w/]+\.py", words[1])]


# --------------------------------------------------------------------------- static checks


def test_every_command_is_run_or_skipped_with_a_reason():
    commands = [cmd for cmd, _ in readme_commands()]
    unknown = [cmd for cmd in commands if cmd not in RUN and cmd not in SKIP]
    assert not unknown, f"README commands neither in RUN nor in SKIP of {__file__}: {unknown}"
    stale = [cmd for cmd in [*RUN, *SKIP] if cmd not in commands]
    assert not stale, f"RUN/SKIP entries no longer in README: {stale}"
    assert not set(RUN) & set(SKIP)


def test_no_command_hides_in_an_unmarked_block():
    for language, body in code_blocks():
        if language not in SHELLS:
            assert not re.search(r"^\s*(python|make|pip) ", body, re.M), (
                f"a ```{language} block holds commands; mark it ```bash:\n{body}")


@pytest.mark.parametrize("command,words", python_commands(),
                         ids=[cmd[:60] for cmd, _ in python_commands()])
def test_parameters_named_in_readme_exist(command, words):
    names = valid_names(words[1])
    assert names != set(), f"{command}: {words[1]} does not exist or has no parameters"
    for word in words[2:]:
        name = word[2:].partition("=")[0]
        if word.startswith("--") and name != "help":
            assert name in names, f"{command}: {words[1]} has no parameter --{name}"


def test_links_and_pictures_exist():
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)", README)
    targets += re.findall(r"<img [^>]*src=\"([^\"]+)\"", README)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", README, re.M)}
    anchors = [t[1:] for t in targets if t.startswith("#")]
    assert [a for a in anchors if a not in headings] == [], f"headings are {sorted(headings)}"
    assert local, "README has no relative links or pictures"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
    for picture in [t for t in local if t.endswith(".png")]:
        assert (ROOT / picture).stat().st_size < 200_000, f"{picture} is large for a README"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_parameter_has_a_one_line_meaning(script):
    params = read_parameter_block(ROOT / script).parameters
    assert params
    assert [p.name for p in params if not p.help.strip()] == []
    assert all("\n" not in p.help for p in params)


# --------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch project folder: 12 demo images relabelled to 2 classes (triangle -> 2)."""
    work = tmp_path_factory.mktemp("readme")
    write_demo_dataset(work / "VOCdevkit", num_images=12, img_dir=work / "img")
    for label_path in (work / "VOCdevkit/VOC2007/SegmentationClass").glob("*.png"):
        label = Image.open(label_path)
        values = np.asarray(label)
        relabelled = Image.fromarray(np.where(values == 3, 2, values).astype(np.uint8), "P")
        relabelled.putpalette(label.getpalette())
        relabelled.save(label_path)
    writer = cv2.VideoWriter(str(work / "in.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for i in range(2):
        writer.write(np.full((64, 96, 3), 90 * i, np.uint8))
    writer.release()
    assert len(list_images(work / "img")) == 5
    return work


class SharedPredictor(Predictor):
    """A Predictor that builds each set of settings once: the README's predict / get_miou
    commands differ in mode, not in the model, and a frozen ResNet50 takes ~10 s to build."""

    built: dict[str, Predictor] = {}

    def __new__(cls, model=None, forward=None, **kwargs):
        key = repr(sorted(kwargs.items()))
        if model is None and forward is None and key in cls.built:
            return cls.built[key]
        return super().__new__(cls)

    def __init__(self, model=None, forward=None, **kwargs):
        if self in self.built.values():
            return
        super().__init__(model, forward, **kwargs)
        if model is None and forward is None:
            self.built[repr(sorted(kwargs.items()))] = self


def run_script(words: list[str], *, own_process: bool) -> str:
    """`python x.py args` or `python -m x args`, in this process (x.main(args) as the command
    line runs it) or in a new one; a non-zero exit fails. Returns what a new process printed."""
    if own_process:
        done = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, f"{shlex.join(words)}:\n{done.stderr[-3000:]}"
        return done.stdout
    name, args = (words[2], words[3:]) if words[1] == "-m" else (words[1], words[2:])
    module = importlib.import_module(name.removesuffix(".py").replace("/", "."))
    try:
        run_main(module.main, args)
    except SystemExit as stop:
        assert stop.code in (None, 0), f"{shlex.join(words)} exited with: {stop.code}"
    return ""


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c, _ in readme_commands() if c in RUN],
                         ids=lambda c: c[:70])
def test_readme_command_runs(command, workdir, monkeypatch, capsys):
    variables = dict(readme_commands())[command]
    run = RUN[command]
    words = [*expand(command, variables), *run.extra]
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(run.stdin))
    for module in ("utils.predict_modes", "utils.evaluation"):
        monkeypatch.setattr(f"{module}.Predictor", SharedPredictor)
    if run.own_process:
        words = [words[0], str(ROOT / words[1]), *words[2:]]
    printed = run_script(words, own_process=run.own_process) + capsys.readouterr().out
    for path in run.creates:
        assert (workdir / path).is_file(), f"{command}: no {path}\n{printed[-3000:]}"
    if "--help" in words:
        assert "(default: " in printed
