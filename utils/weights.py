"""Load ImageNet, original (Keras 2) and own (Keras 3) weight files into the U-Net, with a report.

Three kinds of HDF5 files reach `load_weights`:
* keras-applications ImageNet "notop" files: backbone only, keras.applications names (VGG16)
  or the Caffe-style names of the published ResNet50 file (`conv1`, `bn_conv1`, `res2a_branch2a`);
* checkpoints of the original repository (`save_weights` in Keras 2): named backbone layers, but
  auto-named decoder convs (`conv2d`, `conv2d_1`, ... in tf.keras; `conv2d_1`, ... in standalone
  Keras 2.1.5) that are mapped onto our fixed decoder names by build order;
* our own `.weights.h5` files, which Keras 3 keys by layer class and position, not by name.

Every file is first turned into a plan (model layer -> file layer) from weight shapes alone, so
mismatches are reported, or raised in strict mode, before anything is assigned.
"""

import itertools
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import keras

from nets.unet import HEAD_NAME, decoder_conv_names
from utils.downloads import command as download_command
from utils.downloads import release_for
from utils.errors import MissingFileError, UserError

CAFFE_RESNET_NAME = re.compile(r"(res|bn)(\d)([a-f])_branch(1|2a|2b|2c)")
CAFFE_BRANCHES = {"1": "0", "2a": "1", "2b": "2", "2c": "3"}
AUTO_CONV_NAME = re.compile(r"conv2d(?:_(\d+))?")


class WeightsError(UserError, ValueError):
    """A weights file that cannot be read or does not fit the model; says what to use."""


class CheckpointWriteError(UserError, OSError):
    """A checkpoint could not be written (disk full, folder removed); the previous one is kept."""


@dataclass
class LoadReport:
    """What `load_weights` did: layers loaded, layers skipped with the reason, head classes."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    source_classes: int | None = None
    notes: list[str] = field(default_factory=list)
    total: int = 0  # weighted layers in the model

    def skipped_lines(self) -> list[str]:
        """One line per reason, naming the layers skipped for it."""
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(name)
        lines = []
        for reason, names in by_reason.items():
            more = f", ... (+{len(names) - 6} more)" if len(names) > 6 else ""
            lines.append(f"  skipped {', '.join(names[:6])}{more}: {reason}")
        return lines

    def __str__(self) -> str:
        header = f"Loaded {len(self.loaded)} of {self.total} layers from {self.path}"
        return "\n".join([header, *(f"  {note}" for note in self.notes), *self.skipped_lines()])


@dataclass
class _FileLayer:
    """One layer of a weight file: its name there and its datasets in `layer.weights` order."""

    name: str
    paths: list[str]
    shapes: list[tuple[int, ...]]


def _string_list(group: h5py.Group, name: str) -> list[str]:
    """A list-of-strings attribute, also when Keras 2 split it into `name0`, `name1`, ..."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        keys = itertools.takewhile(lambda key: key in group.attrs,
                                   (f"{name}{i}" for i in itertools.count()))
        chunks = [group.attrs[key] for key in keys]
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for c in chunks for v in c]


def _read_legacy(root: h5py.Group) -> list[_FileLayer]:
    """Layers of a Keras 2 `save_weights` file, in the order the model listed them."""
    entries = []
    for name in _string_list(root, "layer_names"):
        group = root[name]
        datasets = [group[weight] for weight in _string_list(group, "weight_names")]
        if datasets:
            paths, shapes = [d.name for d in datasets], [d.shape for d in datasets]
            entries.append(_FileLayer(name, paths, shapes))
    return entries


def _snake_case(name: str) -> str:
    """Keras 3 saving's key for a layer class (`BatchNormalization` -> `batch_normalization`)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_keras3(f: h5py.File, model: keras.Model) -> list[_FileLayer]:
    """Layers of a Keras 3 `.weights.h5` file.

    Keras 3 stores layer i of `model.layers` under `layers/<class in snake case>[_<n>]/vars`,
    numbering each class in layer order; entries that match a model layer take its name.
    """
    counts: dict[str, int] = {}
    key_to_name = {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        key_to_name[base if n == 0 else f"{base}_{n}"] = layer.name
    entries = []
    for key, group in f["layers"].items():
        variables = group.get("vars", {})
        paths = [variables[str(i)].name for i in range(len(variables))]
        if paths:
            entries.append(_FileLayer(key_to_name.get(key, key), paths,
                                      [f[p].shape for p in paths]))
    return entries


def _canonical_name(name: str) -> str:
    """Caffe-style ResNet50 names (`res2a_branch2a`, `bn_conv1`) -> keras.applications names."""
    if name in ("conv1", "bn_conv1"):
        return "conv1_conv" if name == "conv1" else "conv1_bn"
    match = CAFFE_RESNET_NAME.fullmatch(name)
    if not match:
        return name
    kind, stage, letter, branch = match.groups()
    block = ord(letter) - ord("a") + 1
    suffix = "conv" if kind == "res" else "bn"
    return f"conv{stage}_block{block}_{CAFFE_BRANCHES[branch]}_{suffix}"


def _plan(model: keras.Model, entries: list[_FileLayer], backbone: str, report: LoadReport
          ) -> tuple[dict[str, keras.layers.Layer], dict[str, _FileLayer]]:
    """Pair model layers with file layers: by (mapped) name, then by shapes in file order."""
    weighted = {layer.name: layer for layer in model.layers if layer.weights}
    if any(_canonical_name(e.name) != e.name for e in entries):
        report.notes.append("Caffe-style ResNet names (res2a_branch2a, bn2a_branch2a, ...) "
                            "mapped to keras.applications names")
    pairs: dict[str, _FileLayer] = {}
    unmatched = []
    for entry in entries:
        name = _canonical_name(entry.name)
        if name in weighted and name not in pairs:
            pairs[name] = entry
        else:
            unmatched.append(entry)

    # Auto-named decoder convs: the k-th by counter is the k-th decoder conv in build order,
    # whether numbering starts at `conv2d` (tf.keras) or `conv2d_1` (standalone Keras).
    auto = [e for e in unmatched if AUTO_CONV_NAME.fullmatch(e.name)]
    decoder = [name for name in decoder_conv_names(backbone) if name not in pairs]
    if auto and len(auto) == len(decoder):
        auto.sort(key=lambda e: int(AUTO_CONV_NAME.fullmatch(e.name).group(1) or 0))
        pairs.update(zip(decoder, auto, strict=True))
        unmatched = [e for e in unmatched if e not in auto]
        report.notes.append(f"decoder convs {auto[0].name}..{auto[-1].name} mapped to "
                            f"{decoder[0]}..{decoder[-1]} by build order")

    # Last resort: layers left on both sides pair up in order among equal weight shapes.
    left = [name for name in weighted if name not in pairs]
    by_order = []
    for shapes in {tuple(e.shapes) for e in unmatched}:
        files = [e for e in unmatched if tuple(e.shapes) == shapes]
        models = [n for n in left if [tuple(w.shape) for w in weighted[n].weights] == list(shapes)]
        if len(files) == len(models):
            by_order += [(n, e) for n, e in zip(models, files, strict=True)]
    by_order.sort(key=lambda pair: list(weighted).index(pair[0]))
    for name, entry in by_order:
        pairs[name] = entry
        unmatched.remove(entry)
    if by_order:
        report.notes.append("matched by weight shapes and order: "
                            + ", ".join(f"{entry.name} -> {name}" for name, entry in by_order))

    for entry in unmatched:
        report.skipped[entry.name] = "not in model"
    if not set(decoder_conv_names(backbone)) & set(pairs):
        report.notes.append("backbone-only file (e.g. ImageNet notop): the decoder and head "
                            "start from their initialisers")
    return weighted, pairs


def _check_shapes(weighted: dict[str, keras.layers.Layer], pairs: dict[str, _FileLayer],
                  report: LoadReport) -> dict[str, _FileLayer]:
    """Keep pairs whose shapes agree; record why the others are skipped."""
    if HEAD_NAME in pairs:
        report.source_classes = int(pairs[HEAD_NAME].shapes[0][-1])
    ready = {}
    for name, layer in weighted.items():
        entry = pairs.get(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if entry is None:
            report.skipped[name] = "not in file (left as initialised)"
        elif [tuple(s) for s in entry.shapes] == expected:
            ready[name] = entry
        elif name == HEAD_NAME and entry.shapes[0][:-1] == expected[0][:-1]:
            report.skipped[name] = (f"checkpoint head has {report.source_classes} classes, "
                                    f"model has {expected[0][-1]}: head left random")
        else:
            report.skipped[name] = (f"shape mismatch: file {[tuple(s) for s in entry.shapes]} "
                                    f"vs model {expected}")
    return ready


def _file_backbone(entries: list[_FileLayer]) -> str:
    """Only ResNet50 has batch norm layers (4 weights each)."""
    return "resnet50" if any(len(e.paths) == 4 for e in entries) else "vgg"


def _raise_if_strict(report: LoadReport, model: keras.Model) -> None:
    head_classes = model.get_layer(HEAD_NAME).weights[0].shape[-1]
    if report.source_classes is not None and report.source_classes != head_classes:
        raise WeightsError(
            f"{report.path}: checkpoint head has {report.source_classes} classes, model has "
            f"{head_classes}: set num_classes = {report.source_classes}, or use weights trained "
            f"with {head_classes} classes."
        )
    if report.skipped:
        raise WeightsError(
            f"{report.path} does not fit the model (prediction needs every layer):\n"
            + "\n".join(report.skipped_lines()) + "\n"
            "Use a full checkpoint trained with the same backbone and num_classes "
            "(ImageNet backbone-only files are for training)."
        )


def check_weights_file(path: str | Path) -> Path:
    """The path of an existing weights file, else a MissingFileError saying where to get it."""
    path = Path(path)
    if not path.is_file():
        name = release_for(path)
        get = (f"download it with `{download_command(name)}`" if name else
               "`python -m utils.downloads` lists the released weights")
        raise MissingFileError(
            f"model_path = {str(path)!r} does not exist: {get}, or set model_path to one of "
            "your checkpoints (training writes them to logs/).")
    return path


def load_weights(model: keras.Model, path: str | Path, backbone: str, *,
                 strict: bool = False) -> LoadReport:
    """Load any supported HDF5 weight file into `model` and print what was loaded and skipped.

    `strict=False` (training) skips layers whose shapes differ, e.g. a head with another class
    count; `strict=True` (prediction) raises on any layer that is missing or does not fit.
    """
    path = check_weights_file(path)
    report = LoadReport(str(path), total=sum(1 for layer in model.layers if layer.weights))
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)  # full-model .h5 files nest the weights
            if "layer_names" in root.attrs:
                entries, keras3 = _read_legacy(root), False
                version = root.attrs.get("keras_version", b"?")
                version = version.decode() if isinstance(version, bytes) else version
                report.notes.append(f"legacy Keras {version} HDF5 file")
            elif "layers" in f:
                entries, keras3 = _read_keras3(f, model), True
                report.notes.append("Keras 3 .weights.h5 file")
            else:
                raise WeightsError(f"{path}: HDF5 file without Keras weights (no layer_names "
                                   "attribute, no layers group); is it a weights file?")

            source = _file_backbone(entries)
            if entries and source != backbone:
                raise WeightsError(f"{path} holds {source} weights but backbone = '{backbone}'; "
                                   f"set backbone = '{source}' or use {backbone} weights.")
            weighted, pairs = _plan(model, entries, backbone, report)
            ready = _check_shapes(weighted, pairs, report)
            if strict:
                _raise_if_strict(report, model)
            if not ready:
                raise WeightsError(f"{path}: no layer of the file fits the model.\n{report}")

            report.loaded = list(ready)
            if keras3 and not report.skipped:
                model.load_weights(path)  # the file fits exactly: let Keras do it
            else:
                for name, entry in ready.items():
                    weighted[name].set_weights([f[p][()] for p in entry.paths])
    except (OSError, KeyError) as error:
        raise WeightsError(
            f"{path} cannot be read as an HDF5 weights file ({error}); it is truncated or not a "
            "weights file: download or copy it again."
        ) from error
    print(report)
    return report


def save_model_weights(model: keras.Model, path: str | Path) -> None:
    """The model's weights only, about 4 bytes per parameter: a compiled model's own
    `save_weights` also stores the optimizer (twice that again for Adam). Any model with the
    same layers loads the file."""
    keras.Model(model.inputs, model.outputs, name=model.name).save_weights(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_weights_atomic(model: keras.Model, path: str | Path) -> None:
    """Save the weights to a temporary file in the same folder, then rename, so `path` is never
    half-written; the file gets the permissions a plain write would give under the umask."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: Keras 3 weight files must end in .weights.h5.")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".weights.h5",
                                    dir=path.parent)
    os.close(handle)
    try:
        save_model_weights(model, temp)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp creates files readable by the owner only
        os.replace(temp, path)
    except OSError as error:
        raise CheckpointWriteError(
            f"{path} could not be written ({error}). Free disk space or set save_dir to another "
            "folder; the file keeps its previous content."
        ) from error
    finally:
        Path(temp).unlink(missing_ok=True)
