"""The README and docs/*.md cannot drift from the code: their commands run, their links
resolve, their parameters exist.

Every command in the ```bash blocks of README.md and docs/*.md is either run here, in page
order (README first, then docs/ by name; a command that appears twice runs once), inside a
scratch folder holding a tiny 2-class dataset (RUN: the extra `--name value` words appended to
shrink it or point it at the tiny model; later words win), or listed in SKIP with the reason.
They run in this process (`script.main`), and commands with the same predictor settings share
one built predictor, to stay fast; the ONNX export runs in a process of its own, because
tf2onnx needs gigabytes while it converts. A command in neither list, or a list entry no
longer in any page, fails the test. `python <script>.py --name ...` anywhere in the pages
(inline code and skipped commands included) must name parameters the script has. Links and
pictures resolve relative to the page that holds them.
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
from utils.em_data import write_cell_picture, write_em_dataset
from utils.predictor import Predictor
from utils.utils import list_images

ROOT = Path(__file__).resolve().parents[1]
README_PATH = ROOT / "README.md"
PAGES = [README_PATH, *sorted((ROOT / "docs").glob("*.md"))]
TEXTS = {page: page.read_text(encoding="utf-8") for page in PAGES}
README = TEXTS[README_PATH]
README_MAX_BYTES = 15_000
SHELLS = ("bash", "sh", "shell")
SCRIPTS = ["train.py", "predict.py", "unet.py", "get_miou.py", "voc_annotation.py",
           "json_to_dataset.py", "summary.py", "docs/make_pictures.py", "benchmark.py",
           "utils/demo_data.py", "train_medical.py", "voc_annotation_medical.py",
           "utils/em_data.py"]

TINY_TRAIN = ("--model_path", "", "--input_shape", "64", "64", "--Freeze_Epoch", "1",
              "--UnFreeze_Epoch", "1", "--Freeze_batch_size", "2", "--Unfreeze_batch_size", "2",
              "--eval_flag", "False")
TINY_MODEL = ("--input_shape", "64", "64")
# The pages' predict commands without model settings assume them in unet.py: here, the model
# the training command below wrote (or random weights, before it has run).
TRAINED = ("--model_path", "logs/best_epoch_weights.weights.h5", "--num_classes", "3",
           "--backbone", "resnet50", *TINY_MODEL)
RANDOM = ("--model_path", "", "--num_classes", "3", "--backbone", "resnet50", *TINY_MODEL)
# The medical predict commands: a 2-class VGG (train_medical.py's backbone) at 64x64 with
# random weights; tests/test_medical.py trains through train_medical.py.
MEDICAL = ("--model_path", "", *TINY_MODEL)


@dataclass(frozen=True)
class Run:
    extra: tuple[str, ...] = ()  # appended to the page's command (shrinks it)
    stdin: str = ""  # typed at the prompt (predict modes)
    creates: tuple[str, ...] = ()  # files the command must leave in the scratch folder
    own_process: bool = False  # run as `python ...` in a new process rather than in this one
    prints: str = ""  # text the output must hold


RUN = {
    "python -c \"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\"":
        Run(own_process=True, prints="]"),
    "python -m utils.downloads": Run(prints="unet_vgg_voc"),
    "python predict.py": Run(RANDOM, stdin="img/demo_3.jpg\n", creates=("img_out/demo_3.jpg",)),
    "python voc_annotation.py": Run(creates=("VOCdevkit/VOC2007/ImageSets/Segmentation/val.txt",)),
    "python voc_annotation.py --num_classes 3": Run(),
    "python voc_annotation.py --fix_labels True": Run(),
    "python train.py --help": Run(prints="(default: "),
    "python train.py --num_classes 3 --backbone resnet50 --model_path "
    "model_data/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 --input_shape 256 256 "
    "--Freeze_Epoch 10 --UnFreeze_Epoch 50 --Freeze_batch_size 8 --Unfreeze_batch_size 4":
        Run(TINY_TRAIN, creates=("logs/best_epoch_weights.weights.h5",
                                 "logs/last_epoch_weights.weights.h5")),
    "python predict.py --model_path logs/best_epoch_weights.weights.h5 --num_classes 3 "
    "--backbone resnet50 --input_shape 256 256":
        Run(TINY_MODEL, stdin="img/demo_1.jpg\n\n", creates=("img_out/demo_1.jpg",)),
    "python predict.py --mode dir_predict --dir_origin_path img/ --dir_save_path img_out/":
        Run(TRAINED, creates=("img_out/demo_large.jpg",)),
    "python predict.py --mode video --video_path in.mp4 --video_save_path out.avi":
        Run(TRAINED, creates=("out.avi",)),
    "python get_miou.py --model_path logs/best_epoch_weights.weights.h5 --num_classes 3 "
    "--backbone resnet50 --input_shape 256 256 --name_classes background cat dog":
        Run(TINY_MODEL, creates=("miou_out/metrics.json", "miou_out/mIoU.png")),
    "python predict.py --mode fps":
        Run((*TRAINED, "--fps_image_path", "img/demo_large.jpg", "--test_interval", "2"),
            prints="FPS"),
    # A VGG with the trained model's classes and size: its ONNX export is lighter than
    # ResNet50's, and predict_onnx below needs only those two to match.
    "python predict.py --mode export_onnx": Run((*RANDOM, "--backbone", "vgg", "--simplify",
                                                 "False"), creates=("model_data/models.onnx",),
                                                own_process=True),
    "python predict.py --mode predict_onnx": Run(TRAINED, stdin="img/demo_2.jpg\n",
                                                 creates=("img_out/demo_2.jpg",)),
    "python summary.py --input_shape 256 256 --num_classes 3 --backbone resnet50":
        Run(TINY_MODEL),
    "python voc_annotation_medical.py":
        Run(creates=("Medical_Datasets/ImageSets/Segmentation/train.txt",),
            prints="as this layout expects"),
    "python voc_annotation_medical.py --train_percent 0.9": Run(("--train_percent", "0.75")),
    "python predict.py --model_path model_data/unet_voc_medical.h5 --num_classes 2":
        Run(MEDICAL, stdin="img/cell.png\n", creates=("img_out/cell.png",)),
    "python get_miou.py --model_path logs/best_epoch_weights.weights.h5 --num_classes 2 "
    "--name_classes background membrane --VOCdevkit_path Medical_Datasets":
        Run((*MEDICAL, "--miou_out_path", "miou_medical"),
            creates=("miou_medical/metrics.json",), prints="===>membrane:"),
}
SKIP = {
    "make demo": "trains for minutes; the same scripts run here on tiny settings",
    "make test": "runs this test",
    "make clean-demo": "tests/test_demo_data.py checks what the demo writes and deletes",
    "python -m venv .venv": "creates an environment; make test already runs in one",
    "source .venv/bin/activate": "changes the calling shell only",
    "pip install -r requirements.txt -c constraints.txt": "installs packages",
    "pip install \"tensorflow[and-cuda]==2.21.*\"": "installs packages",
    "nvidia-smi": "needs a GPU",
    "pip install -r requirements-jax.txt -c constraints.txt": "installs packages",
    "pip install -r requirements-torch.txt -c constraints.txt --extra-index-url "
    "https://download.pytorch.org/whl/cpu": "installs packages",
    "KERAS_BACKEND=jax python train.py --num_classes 3":
        "tests/test_backends.py trains, resumes and predicts on JAX and PyTorch",
    "KERAS_BACKEND=torch python predict.py --mode dir_predict":
        "tests/test_backends.py runs every predict mode on JAX and PyTorch",
    "XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax python train.py "
    "--train_gpu \"[]\"": "tests/test_backends.py trains on two virtual JAX devices",
    "python -m utils.downloads --weights unet_vgg_voc":
        "downloads 100 MB; tests/test_downloads.py downloads from file:// URLs it writes",
    "python -m utils.downloads --weights resnet50_imagenet":
        "downloads 95 MB; tests/test_downloads.py downloads from file:// URLs it writes",
    "python -m utils.downloads --weights vgg16_imagenet":
        "downloads 58 MB; tests/test_downloads.py downloads from file:// URLs it writes",
    "python -m utils.downloads --weights unet_voc_medical":
        "downloads 94 MB; tests/test_downloads.py downloads from file:// URLs it writes",
    "make demo-medical": "trains for minutes; tests/test_demo_data.py runs it on tiny settings",
    "python train_medical.py --focal_loss True":
        "tests/test_medical.py trains through train_medical.py on a tiny EM set",
    "python predict.py --mode video --video_path 0": "needs a webcam",
    "python predict.py --mode export_savedmodel":
        "tests/test_exports.py runs this mode through predict.py and checks the result",
    "python predict.py --mode export_tflite":
        "tests/test_exports.py runs this mode through predict.py and checks the result",
    "python train.py --train_gpu 0 1 --Freeze_batch_size 16 --Unfreeze_batch_size 8":
        "needs two GPUs",
    "python benchmark.py --quick": "minutes of timing; tests/test_benchmark.py covers it",
    "python benchmark.py": "many minutes of timing",
    "python benchmark.py --sections accuracy --model_path "
    "logs/demo/best_epoch_weights.weights.h5 --VOCdevkit_path VOCdevkit/demo --num_classes 4 "
    "--backbone resnet50 --eval_shape 64 64":
        "needs the demo checkpoint; tests/test_benchmark.py covers it",
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


def page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a page."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def prose(text: str) -> str:
    """A page without its fenced blocks (whose `# comments` are no headings)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def page_commands(text: str) -> list[tuple[str, dict[str, str]]]:
    """Each shell command of a page's bash blocks (continuations joined, comments dropped,
    spaces normalised) with the shell variables set before it in its block."""
    commands = []
    for language, body in code_blocks(text):
        if language not in SHELLS:
            continue
        variables: dict[str, str] = {}
        for line in body.replace("\\\n", " ").splitlines():
            line = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
            assignment = re.fullmatch(r"(\w+)=(\S+)", line)  # not VAR=x command
            if assignment:
                variables[assignment[1]] = shlex.split(assignment[2])[0]
            elif line:
                commands.append((line, dict(variables)))
    return commands


def all_commands() -> dict[str, dict[str, str]]:
    """Every page's commands, README first then docs/ by name, each once (the variables of
    its first appearance)."""
    commands: dict[str, dict[str, str]] = {}
    for page in PAGES:
        for command, variables in page_commands(TEXTS[page]):
            commands.setdefault(command, variables)
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
    """`python <script>.py ...` from code blocks and inline code of every page, variables
    expanded."""
    found = [(cmd, expand(cmd, v)) for cmd, v in all_commands().items()]
    for page in PAGES:
        inline = re.findall(r"(?<!`)`((?:python )?[\w/]+\.py --[^`]*)`(?!`)", TEXTS[page])
        found += [(cmd, expand(cmd if cmd.startswith("python") else f"python {cmd}", {}))
                  for cmd in inline]
    return [(cmd, words) for cmd, words in found if len(words) > 1 and words[0] == "python"
            and re.fullmatch(r"[\w/]+\.py", words[1])]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", prose(TEXTS[page]), re.M)}


def links_of(page: Path) -> list[str]:
    text = prose(TEXTS[page])
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)", text)
    return targets + re.findall(r"<img [^>]*src=\"([^\"]+)\"", text)


# --------------------------------------------------------------------------- static checks


def test_readme_is_short():
    size = README_PATH.stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, more than {README_MAX_BYTES}: move reference material to "
        "docs/")


def test_readme_links_every_docs_page():
    linked = {(ROOT / t.split("#")[0]).resolve() for t in links_of(README_PATH)}
    unlinked = [page_name(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README's More list misses {unlinked}"


def test_every_command_is_run_or_skipped_with_a_reason():
    commands = all_commands()
    unknown = [cmd for cmd in commands if cmd not in RUN and cmd not in SKIP]
    assert not unknown, f"commands of the pages neither in RUN nor in SKIP of {__file__}: {unknown}"
    stale = [cmd for cmd in [*RUN, *SKIP] if cmd not in commands]
    assert not stale, f"RUN/SKIP entries no longer in README.md or docs/*.md: {stale}"
    assert not set(RUN) & set(SKIP)


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_no_command_hides_in_an_unmarked_block(page):
    for language, body in code_blocks(TEXTS[page]):
        if language not in SHELLS:
            assert not re.search(r"^\s*(python|make|pip) ", body, re.M), (
                f"{page_name(page)}: a ```{language} block holds commands; mark it ```bash:\n"
                f"{body}")


@pytest.mark.parametrize("command,words", python_commands(),
                         ids=[cmd[:60] for cmd, _ in python_commands()])
def test_parameters_named_in_the_pages_exist(command, words):
    names = valid_names(words[1])
    assert names != set(), f"{command}: {words[1]} does not exist or has no parameters"
    for word in words[2:]:
        name = word[2:].partition("=")[0]
        if word.startswith("--") and name != "help":
            assert name in names, f"{command}: {words[1]} has no parameter --{name}"


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_links_and_pictures_exist(page):
    targets = links_of(page)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert page != README_PATH or local, "README has no relative links or pictures"
    problems = []
    for target in local:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and linked in TEXTS:
            if anchor not in anchors_of(linked):
                problems.append(f"{target}: no heading #{anchor} in {page_name(linked)} "
                                f"(its headings: {sorted(anchors_of(linked))})")
        elif linked.suffix == ".png" and linked.stat().st_size >= 200_000:
            problems.append(f"{target} is large for a page")
    assert not problems, f"{page_name(page)}: {problems}"


def test_architecture_names_every_module():
    """docs/architecture.md's table names every module of nets/ and utils/, and only those."""
    text = TEXTS[ROOT / "docs" / "architecture.md"]
    named = set(re.findall(r"`((?:nets|utils)/\w+\.py)`", text))
    modules = {p.relative_to(ROOT).as_posix() for folder in ("nets", "utils")
               for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}
    assert sorted(modules - named) == [], "modules missing from docs/architecture.md"
    assert sorted(named - modules) == [], "docs/architecture.md names modules that do not exist"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_parameter_has_a_one_line_meaning(script):
    params = read_parameter_block(ROOT / script).parameters
    assert params
    assert [p.name for p in params if not p.help.strip()] == []
    assert all("\n" not in p.help for p in params)


# --------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch project folder: 12 demo images relabelled to 2 classes (triangle -> 2), and
    8 synthetic EM slices with img/cell.png for the medical commands."""
    work = tmp_path_factory.mktemp("readme")
    write_demo_dataset(work / "VOCdevkit", num_images=12, img_dir=work / "img")
    write_em_dataset(work / "Medical_Datasets", 8, size=(64, 64))
    write_cell_picture(work / "img" / "cell.png")
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
    assert len(list_images(work / "img")) == 6
    return work


class SharedPredictor(Predictor):
    """A Predictor that builds each set of settings once: the pages' predict / get_miou
    commands differ in mode, not in the model, and building a frozen ResNet50 takes seconds."""

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
@pytest.mark.parametrize("command", [c for c in all_commands() if c in RUN],
                         ids=lambda c: c[:70])
def test_page_command_runs(command, workdir, monkeypatch, capsys):
    run = RUN[command]
    words = [*expand(command, all_commands()[command]), *run.extra]
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(run.stdin))
    for module in ("utils.predict_modes", "utils.evaluation"):
        monkeypatch.setattr(f"{module}.Predictor", SharedPredictor)
    if run.own_process and words[1].endswith(".py"):
        words = [words[0], str(ROOT / words[1]), *words[2:]]
    printed = run_script(words, own_process=run.own_process) + capsys.readouterr().out
    for path in run.creates:
        assert (workdir / path).is_file(), f"{command}: no {path}\n{printed[-3000:]}"
    assert run.prints in printed, f"{command}: {run.prints!r} not printed\n{printed[-3000:]}"
