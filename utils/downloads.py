"""Released weights: the original repository's checkpoints and the ImageNet backbones.

`python -m utils.downloads` lists them; `python -m utils.downloads --weights unet_vgg_voc`
downloads one into model_data/ (where model_path points by default). A file whose hash is
published is checked, and a failed or corrupt download leaves no file behind.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError

# ---- Download ---------------------------------------------------------------------------------
# Names of the files to download (`python -m utils.downloads` lists them); [] prints the list.
weights = []
# Folder the files go to: model_path's default points into it.
model_dir = "model_data"

ORIGINAL = "https://github.com/bubbliiiing/unet-keras/releases/download/v1.0/"
KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Release:
    file: str
    url: str
    md5: str | None  # None where the publisher gives no hash
    what: str
    backbone: str
    num_classes: int | None  # None: a backbone-only file
    input_shape: str
    miou: str  # as the publisher reports it


RELEASES = {
    "unet_vgg_voc": Release(
        "unet_vgg_voc.h5", ORIGINAL + "unet_vgg_voc.h5", None,
        "the original's VOC model, trained on VOC12+SBD", "vgg", 21, "512x512",
        "45.48 on VOC-Val12"),
    "unet_resnet_voc": Release(
        "unet_resnet_voc.h5", ORIGINAL + "unet_resnet_voc.h5", None,
        "the original's VOC model, trained on VOC12+SBD", "resnet50", 21, "512x512",
        "64.12 on VOC-Val12"),
    "unet_voc_medical": Release(
        "unet_voc_medical.h5", ORIGINAL + "unet_voc_medical.h5", None,
        "the original's cell-membrane model (EM slices)", "vgg", 2, "512x512", "not published"),
    "vgg16_imagenet": Release(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_APPLICATIONS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc", "ImageNet VGG16 backbone (keras-applications)",
        "vgg", None, "any", "-"),
    "resnet50_imagenet": Release(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_APPLICATIONS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626", "ImageNet ResNet50 backbone (keras-applications)",
        "resnet50", None, "any", "-"),
}
BACKBONE_RELEASES = {"vgg": "vgg16_imagenet", "resnet50": "resnet50_imagenet"}


class DownloadError(UserError, OSError):
    """A file that could not be downloaded, or whose content is not the published one."""


def command(name: str) -> str:
    return f"python -m utils.downloads --weights {name}"


def release_for(path: str | Path) -> str | None:
    """The name of the released file `path` refers to by its file name, if any."""
    return next((name for name, r in RELEASES.items() if r.file == Path(path).name), None)


def describe() -> str:
    """The released files, one line each."""
    rows = [f"{name:18} {r.file:52} {r.backbone:8} classes {r.num_classes or '-':>2}  "
            f"{r.input_shape:8} mIoU {r.miou}: {r.what}" for name, r in RELEASES.items()]
    return "\n".join(rows)


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, folder: str | Path = "model_data") -> Path:
    """The released file `name` in `folder`, downloaded (and its hash checked) if missing."""
    import keras

    if name not in RELEASES:
        raise DownloadError(f"no released weights called {name!r}; use one of "
                            f"{list(RELEASES)}.")
    release = RELEASES[name]
    folder = Path(folder).resolve()
    target = folder / release.file
    if target.is_file():
        if release.md5 and _md5(target) != release.md5:
            raise DownloadError(f"{target} is not the published file (its MD5 differs): delete "
                                f"it and run `{command(name)}` again.")
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{release.file}.part"
    part.unlink(missing_ok=True)
    try:
        fetched = keras.utils.get_file(part.name, origin=release.url, cache_dir=str(folder),
                                       cache_subdir="", file_hash=release.md5)
        os.replace(fetched, target)
    except Exception as error:  # network, HTTP or hash: the message below says which
        raise DownloadError(f"{release.url} could not be downloaded into {target} ({error}). "
                            "Check the connection, or download the file yourself and put it "
                            f"in {folder}.") from error
    finally:
        part.unlink(missing_ok=True)
    print(f"{target}: {release.what} ({release.backbone}).")
    return target


def main(argv: list[str] | None = None) -> None:
    from utils.config import load_config
    from utils.settings import check_settings

    cfg = load_config(__file__, argv)
    check_settings(cfg)
    if not cfg.weights:
        print(describe())
        print(f"\nDownload one with `{command('unet_vgg_voc')}` (into {cfg.model_dir}/).")
    for name in cfg.weights:
        download(name, cfg.model_dir)


if __name__ == "__main__":
    from utils.cli import run

    run(main)
