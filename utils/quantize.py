"""Static int8 quantization of an exported U-Net ONNX model with onnxruntime's tools.

Activations are calibrated on val images letterboxed and scaled exactly as the predictor does.
QDQ format with uint8 activations and per-channel int8 weights is onnxruntime's fast path on
x86 CPUs with VNNI. The 1x1 head and its softmax stay float32: quantized probabilities would tie
and make the argmax arbitrary, for a head that costs almost nothing.
"""

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from nets.unet import HEAD_NAME
from utils.dataset import DatasetError, VOCLayout, as_layout
from utils.machine import cpu_has_vnni
from utils.utils import cvtColor, preprocess_input, read_image, resize_image


class LetterboxCalibrationReader(CalibrationDataReader):
    """Feeds calibration images one at a time, as the predictor's network input."""

    def __init__(self, image_paths: Sequence[str | Path], input_shape: Sequence[int],
                 input_name: str = "images"):
        self.input_name = input_name
        self.height, self.width = (int(v) for v in input_shape)
        self.paths = iter(tqdm(list(image_paths), desc="Calibrate"))

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self.paths, None)
        if path is None:
            return None
        boxed, _, _ = resize_image(cvtColor(read_image(path)), (self.width, self.height))
        return {self.input_name: preprocess_input(np.asarray(boxed, np.float32))[None]}


def calibration_files(dataset: str | Path | VOCLayout, count: int,
                      split: str = "val") -> list[Path]:
    """Up to `count` images spread evenly over a split of the dataset."""
    layout = as_layout(dataset)
    ids = layout.read_split(split)
    if not ids:
        raise DatasetError(f"{layout.split_file(split)} is empty: int8 calibration needs images "
                           "from it.")
    chosen = [ids[i] for i in np.linspace(0, len(ids) - 1, min(count, len(ids))).astype(int)]
    return [layout.image_path(image_id) for image_id in chosen]


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the ONNX nodes exported from the head layer (its conv and softmax): the Keras
    layer name is kept in the node names."""
    return [node.name for node in model.graph.node if f"/{HEAD_NAME}" in node.name]


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    image_paths: Iterable[str | Path],
    input_shape: Sequence[int],
    *,
    per_channel: bool = True,
    reduce_range: bool | None = None,
) -> Path:
    """Write a statically quantized copy of the float32 model `fp32_path` to `int8_path`.

    `reduce_range` (7-bit weights) defaults to True unless this CPU has VNNI: without VNNI,
    onnxruntime's int8 convolutions saturate on full-range weights, and the class maps drift.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    image_paths = list(image_paths)
    if not image_paths:
        raise ValueError("int8 calibration needs at least one image; none were given.")
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
        print("int8 weights: 8 bits (this CPU has VNNI; on a CPU without it, quantize there)"
              if not reduce_range else
              "int8 weights: 7 bits (reduce_range), since this CPU has no VNNI or it is unknown")
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        input_name = model.graph.input[0].name
        quantize_static(
            str(prepared),
            str(int8_path),
            LetterboxCalibrationReader(image_paths, input_shape, input_name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            nodes_to_exclude=head_nodes(model),
            calibrate_method=CalibrationMethod.MinMax,
        )
    print(f"int8 model saved as {int8_path} (calibrated on {len(image_paths)} images).")
    return int8_path
