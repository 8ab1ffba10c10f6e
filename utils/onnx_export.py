"""ONNX: export the U-Net for onnxruntime, and run an exported model as a predictor forward.

Input `images` and output `output` are NHWC float32 like the Keras model, with probabilities
(the softmax is part of the graph), so the predictor's pre- and post-processing stay the same.
The export goes through a TensorFlow graph (tf2onnx); the exported model runs on any backend.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.backend import require_tensorflow
from utils.errors import MissingFileError
from utils.exports import EXPORT_ON_TENSORFLOW, ExportError, check_export, check_float32
from utils.predictor import Forward

# On JAX or PyTorch: export on TensorFlow, then run the file anywhere.
ONNX_ON_TENSORFLOW = (f"{EXPORT_ON_TENSORFLOW}; the .onnx file then runs on every backend with "
                      "--mode predict_onnx")


class OnnxModelError(ExportError):
    """An ONNX model that does not fit the settings."""


def onnx_forward(onnx_path: str | Path, input_shape: Sequence[int]) -> Forward:
    """An ONNX Runtime session as a forward callable; checks it was exported for `input_shape`."""
    import onnxruntime

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise MissingFileError(
            f"{onnx_path}: ONNX model not found; export one first with "
            "`python predict.py --mode export_onnx`."
        )
    session = onnxruntime.InferenceSession(
        str(onnx_path), providers=onnxruntime.get_available_providers()
    )
    exported = session.get_inputs()[0]
    if list(exported.shape[1:3]) != list(input_shape):
        raise OnnxModelError(
            f"{onnx_path} was exported for input {exported.shape[1:3]} but input_shape is "
            f"{list(input_shape)}; pass --input_shape {exported.shape[1]} {exported.shape[2]} "
            "or export again."
        )
    return lambda batch: session.run(None, {exported.name: batch.astype(np.float32)})[0]


def _export_graph(model: keras.Model) -> keras.Model:
    """The same layers and weights with UpSampling2D as a nearest resize, which exports to one
    ONNX Resize instead of a chain of Tile/Reshape/Transpose nodes (same numbers, faster)."""

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.UpSampling2D):
            height, width = layer.output.shape[1:3]
            return keras.layers.Resizing(height, width, "nearest", name=layer.name)
        return layer  # shared, not copied

    return keras.models.clone_model(model, clone_function=swap)


def _tidy_onnx(proto: Any) -> None:
    """Two rewrites of tf2onnx's graph for onnxruntime's fast kernels, exact for this model.

    Resize: TF's half-pixel nearest equals "asymmetric" for the integer x2 scale, the mode
    onnxruntime's NCHWc upsampling takes. Softmax: tf2onnx moves it before the final
    NCHW->NHWC transpose, onto the slow non-last axis; put it back after the transpose.
    """
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.name == "coordinate_transformation_mode" and (
                    attribute.s == b"tf_half_pixel_for_nn"):
                attribute.s = b"asymmetric"
    nodes = list(proto.graph.node)
    transpose = next(n for n in nodes if proto.graph.output[0].name in n.output)
    softmax = next((n for n in nodes if n.output[0] == transpose.input[0]), None)
    if (transpose.op_type != "Transpose" or softmax is None or softmax.op_type != "Softmax"
            or sum(softmax.output[0] in n.input for n in nodes) != 1):
        return
    logits, probabilities = softmax.input[0], transpose.output[0]
    transpose.input[0], transpose.output[0] = logits, softmax.output[0]
    softmax.input[0], softmax.output[0] = softmax.output[0], probabilities
    for attribute in softmax.attribute:
        if attribute.name == "axis":
            attribute.i = -1
    proto.graph.node.remove(softmax)
    proto.graph.node.insert(list(proto.graph.node).index(transpose) + 1, softmax)


def _convert(graph: keras.Model, opset: int) -> Any:
    """tf2onnx's conversion, step by step: freeze the weights, convert, optimize the graph.

    `tf2onnx.convert.from_function` (and Keras' `model.export(format="onnx")`, which calls it)
    also runs grappler and all twelve tf2onnx optimizers, each on a copy of the graph; every pass
    keeps a copy of all weights until the end, so a ResNet50 U-Net (176 MB of weights) needed
    12 GB. The five optimizers below are the ones that change this model's graph (transposes
    folded into the convs, constants folded, duplicates merged, identities and back-to-back
    transposes removed): the same nodes come out of 3.8 GB. `model.export(format="onnx")` gives
    the same numbers but, without the rewrites of `_export_graph` and `_tidy_onnx`, a graph of
    138 nodes instead of 58 that onnxruntime runs about 1.3x slower.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tf2onnx import optimizer
    from tf2onnx.optimizer.back_to_back_optimizer import BackToBackOptimizer
    from tf2onnx.optimizer.const_fold_optimizer import ConstFoldOptimizer
    from tf2onnx.optimizer.identity_optimizer import IdentityOptimizer
    from tf2onnx.optimizer.merge_duplicated_nodes_optimizer import MergeDuplicatedNodesOptimizer
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer
    from tf2onnx.tfonnx import process_tf_graph

    spec = tf.TensorSpec((None, *graph.input_shape[1:]), tf.float32, name="images")
    call = tf.function(lambda images: graph(images, training=False))
    frozen = convert_variables_to_constants_v2(call.get_concrete_function(spec))
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    (images,), (output,) = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    del frozen, call
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")
        onnx_graph = process_tf_graph(tf_graph, opset=opset, input_names=[images],
                                      output_names=[output],
                                      tensors_to_rename={images: "images", output: "output"})
    del graph_def
    optimizers = {"optimize_transpose": TransposeOptimizer, "fold_constants": ConstFoldOptimizer,
                  "merge_duplication": MergeDuplicatedNodesOptimizer,
                  "remove_identity": IdentityOptimizer, "remove_back_to_back": BackToBackOptimizer}
    onnx_graph = optimizer.optimize_graph(onnx_graph, catch_errors=False, optimizers=optimizers)
    return onnx_graph.make_model("U-Net converted by tf2onnx")


def export_onnx(
    model: keras.Model, onnx_save_path: str | Path, *, simplify: bool = True, opset: int = 13
) -> float:
    """Export the model to ONNX (input `images`, output `output`, NHWC float32 probabilities)
    and check it against Keras (`utils.exports.check_export`); returns the max abs difference.
    """
    require_tensorflow("ONNX export", ONNX_ON_TENSORFLOW)
    import onnx

    check_float32(model)
    onnx_save_path = Path(onnx_save_path)
    onnx_save_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Starting export with onnx {onnx.__version__}.")
    proto = _convert(_export_graph(model), opset)
    _tidy_onnx(proto)
    onnx.checker.check_model(proto)
    if simplify:
        try:
            import onnxsim
        except ImportError:
            print("onnx-simplifier is not installed (pip install onnxsim): export unsimplified.")
        else:
            print(f"Simplifying with onnx-simplifier {onnxsim.__version__}.")
            proto, ok = onnxsim.simplify(proto)
            if not ok:
                raise RuntimeError("onnx-simplifier could not validate the simplified model.")
    onnx.save(proto, str(onnx_save_path))
    print(f"Onnx model save as {onnx_save_path}")

    return check_export(model, onnx_forward(onnx_save_path, model.input_shape[1:3]),
                        "ONNX")["max_difference"]
