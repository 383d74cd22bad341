#!/usr/bin/env python3
"""Convert a TensorFlow.js graph model (model.json + weight shards) to ONNX for OpenCV's DNN module.

Written for the MediaPipe iris and facemesh graph models shipped in @vladmandic/human, and
deliberately small: it knows only the op types those graphs use and refuses anything else with
a clear message, rather than guessing.

Needs Python 3 with numpy and onnx (Debian: python3-numpy, python3-onnx); no TensorFlow.

Layout. TFJS graphs are NHWC; OpenCV's DNN runs NCHW. The ONNX graph takes an NCHW input
(what cv::dnn::blobFromImage produces), keeps every 4-D activation NCHW, and transposes back to
NHWC only where the TF semantics depend on it (before a Reshape, and at 4-D outputs), so each
ONNX output has exactly the shape and element order of the TFJS output.

Opset 11: OpenCV 4.6 imports it well (Pad with its pads as an initializer, Conv, PRelu, ...).
TF 'SAME' padding is written out as explicit pads; where TF pads asymmetrically (stride 2 on an
even size) a separate Pad node is emitted, since asymmetric Conv pads are a weak spot of
several runtimes.

--check runs two independent pure-numpy evaluations on the same seeded random batch:
  * the TFJS graph itself, in NHWC with TF semantics (the reference), and
  * the ONNX graph this script wrote, in NCHW with ONNX semantics,
and reports the max abs difference per output; it fails if it exceeds --tolerance.
--check-out FILE also writes the input and the reference outputs (format below) so that
the C++ tests can compare OpenCV's own run of the ONNX file against the same reference.

Check file format (little-endian): b"MMCHK001", uint32 tensor count, then per tensor:
uint32 name length, name bytes (utf-8), uint32 ndim, int32 dims[ndim], float32 data (C order).
The first tensor is named "input" and is in NCHW (as fed to the ONNX model); the others are
named after the ONNX outputs.

Usage:
  convert_tfjs_to_onnx.py model.json out.onnx [--check] [--check-out out.check.bin]
"""

import argparse
import base64
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 11
# NHWC axis -> NCHW axis, for ops that take an axis (ConcatV2).
NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class ConversionError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Reading the TFJS model
# --------------------------------------------------------------------------------------------

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16,
           "uint8": np.uint8, "uint16": np.uint16, "bool": np.bool_}


def load_tfjs(json_path):
    """Return (nodes in file order, {name: node}, {const name: numpy array}, output names)."""
    with open(json_path, "r", encoding="utf-8") as f:
        model = json.load(f)
    if model.get("format") != "graph-model" or "modelTopology" not in model:
        raise ConversionError(f"{json_path}: not a TFJS graph model (format={model.get('format')!r})")
    nodes = model["modelTopology"]["node"]
    by_name = {n["name"]: n for n in nodes}

    # Weight shards are concatenated in manifest order; each weight is stored as its
    # (possibly quantized) dtype, back to back.
    weights = {}
    base = os.path.dirname(os.path.abspath(json_path))
    for group in model["weightsManifest"]:
        buf = b"".join(open(os.path.join(base, p), "rb").read() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            stored = quant["dtype"] if quant else w["dtype"]
            if stored not in _DTYPES:
                raise ConversionError(f"weight {w['name']}: unsupported stored dtype {stored}")
            dt = np.dtype(_DTYPES[stored]).newbyteorder("<")
            raw = np.frombuffer(buf, dtype=dt, count=count, offset=offset)
            offset += count * dt.itemsize
            if quant and stored in ("uint8", "uint16"):
                # Affine quantization: value = q * scale + min.
                raw = raw.astype(np.float32) * quant["scale"] + quant["min"]
            weights[w["name"]] = raw.astype(_DTYPES[w["dtype"]]).reshape(shape)
        if offset != len(buf):
            raise ConversionError(f"weight shards {group['paths']}: {len(buf) - offset} bytes left over")

    consumed = {i.split(":")[0].lstrip("^") for n in nodes for i in n.get("input", [])}
    outputs = [n["name"] for n in nodes if n["name"] not in consumed and n["op"] != "Const"]
    return nodes, by_name, weights, outputs


def attr_list(node, key):
    return [int(v) for v in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def attr_str(node, key):
    s = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(s).decode() if s is not None else None


def attr_str_list(node, key):
    return [base64.b64decode(s).decode()
            for s in node.get("attr", {}).get(key, {}).get("list", {}).get("s", [])]


def input_names(node):
    # Ignore control dependencies ("^name") and output indices (":0"; these graphs have
    # only single-output nodes).
    return [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]


def check_nhwc(node):
    fmt = attr_str(node, "data_format")
    if fmt not in (None, "NHWC"):
        raise ConversionError(f"{node['name']}: data_format {fmt} not supported")
    dil = attr_list(node, "dilations")
    if dil and any(d != 1 for d in dil):
        raise ConversionError(f"{node['name']}: dilations {dil} not supported")


def same_pads(size, kernel, stride):
    """TF 'SAME' padding for one spatial axis: (before, after); the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------------------------
# Reference: evaluate the TFJS graph with numpy, NHWC, TF semantics
# --------------------------------------------------------------------------------------------

def _windows_nhwc(x, kh, kw, sh, sw):
    """Sliding windows of an NHWC tensor: [N, OH, OW, C, kh, kw]."""
    v = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return v[:, ::sh, ::sw]


def _pad_nhwc(x, kh, kw, sh, sw, padding):
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise ConversionError(f"padding {padding} not supported")
    ph = same_pads(x.shape[1], kh, sh)
    pw = same_pads(x.shape[2], kw, sw)
    return np.pad(x, ((0, 0), ph, pw, (0, 0)))


def tf_conv2d(x, w, strides, padding):
    kh, kw, _, _ = w.shape
    xp = _pad_nhwc(x, kh, kw, strides[1], strides[2], padding)
    win = _windows_nhwc(xp, kh, kw, strides[1], strides[2])      # N OH OW C kh kw
    return np.einsum("nhwcij,ijco->nhwo", win, w, optimize=True)


def tf_depthwise(x, w, strides, padding):
    kh, kw, c, mult = w.shape
    xp = _pad_nhwc(x, kh, kw, strides[1], strides[2], padding)
    win = _windows_nhwc(xp, kh, kw, strides[1], strides[2])
    out = np.einsum("nhwcij,ijcm->nhwcm", win, w, optimize=True)
    return out.reshape(out.shape[0], out.shape[1], out.shape[2], c * mult)


def tf_maxpool(x, ksize, strides, padding):
    kh, kw = ksize[1], ksize[2]
    if padding == "SAME":
        ph = same_pads(x.shape[1], kh, strides[1])
        pw = same_pads(x.shape[2], kw, strides[2])
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=-np.inf)
    return _windows_nhwc(x, kh, kw, strides[1], strides[2]).max(axis=(4, 5))


def tf_prelu(x, alpha):
    # TFJS Prelu: alpha holds the slope itself (the converter negated Keras' folded -alpha).
    return np.where(x >= 0, x, x * alpha)


def run_tfjs_reference(nodes, by_name, weights, outputs, x_nhwc):
    """Evaluate the graph on x_nhwc; return {node name: value} for every evaluated node."""
    values = {}

    def get(name):
        if name in values:
            return values[name]
        node = by_name[name]
        op = node["op"]
        ins = input_names(node)
        if op == "Const":
            out = weights[name]
        elif op == "Placeholder":
            out = x_nhwc
        elif op == "Identity":
            out = get(ins[0])
        elif op == "_FusedConv2D":
            out = tf_conv2d(get(ins[0]), get(ins[1]), attr_list(node, "strides"), attr_str(node, "padding"))
            out = _apply_fused(node, out, [get(i) for i in ins[2:]])
        elif op == "DepthwiseConv2dNative":
            out = tf_depthwise(get(ins[0]), get(ins[1]), attr_list(node, "strides"), attr_str(node, "padding"))
        elif op == "FusedDepthwiseConv2dNative":
            out = tf_depthwise(get(ins[0]), get(ins[1]), attr_list(node, "strides"), attr_str(node, "padding"))
            out = _apply_fused(node, out, [get(i) for i in ins[2:]])
        elif op == "Conv2D":
            out = tf_conv2d(get(ins[0]), get(ins[1]), attr_list(node, "strides"), attr_str(node, "padding"))
        elif op == "BiasAdd":
            out = get(ins[0]) + get(ins[1])
        elif op in ("Add", "AddV2"):
            out = get(ins[0]) + get(ins[1])
        elif op == "Prelu":
            out = tf_prelu(get(ins[0]), get(ins[1]))
        elif op == "Relu":
            out = np.maximum(get(ins[0]), 0)
        elif op == "Relu6":
            out = np.clip(get(ins[0]), 0, 6)
        elif op == "Sigmoid":
            out = 1.0 / (1.0 + np.exp(-get(ins[0])))
        elif op == "MaxPool":
            out = tf_maxpool(get(ins[0]), attr_list(node, "ksize"), attr_list(node, "strides"), attr_str(node, "padding"))
        elif op == "Pad":
            out = np.pad(get(ins[0]), get(ins[1]).astype(np.int64))
        elif op == "ConcatV2":
            out = np.concatenate([get(i) for i in ins[:-1]], axis=int(get(ins[-1])))
        elif op == "Reshape":
            out = get(ins[0]).reshape([int(d) for d in get(ins[1])])
        else:
            raise ConversionError(f"reference: op {op} ({name}) not supported")
        values[name] = out.astype(np.float32) if out.dtype == np.float64 else out
        return values[name]

    for name in outputs:
        get(name)
    return values


def _apply_fused(node, out, args):
    """Apply the fused_ops list of a _FusedConv2D / FusedDepthwiseConv2dNative."""
    fused = attr_str_list(node, "fused_ops")
    k = 0
    for f in fused:
        if f == "BiasAdd":
            out = out + args[k]
            k += 1
        elif f == "Relu":
            out = np.maximum(out, 0)
        elif f == "Relu6":
            out = np.clip(out, 0, 6)
        elif f == "Prelu":
            out = tf_prelu(out, args[k])
            k += 1
        else:
            raise ConversionError(f"{node['name']}: fused op {f} not supported")
    return out


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------

class OnnxBuilder:
    """Collects ONNX nodes and initializers and names them uniquely and readably."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self._used = set()

    def unique(self, name):
        base, n = name, 1
        while name in self._used:
            name = f"{base}_{n}"
            n += 1
        self._used.add(name)
        return name

    def const(self, name, array):
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, output=None, **attrs):
        out = output or self.unique(name)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.unique(name + "/" + op), **attrs))
        return out


def convert(nodes, by_name, weights, outputs, shapes):
    """Build the ONNX graph. `shapes` maps node names to their NHWC shapes (from a reference run
    at batch 1): SAME padding needs the spatial size of each conv input."""
    b = OnnxBuilder()
    # For each TF node: (onnx tensor name, layout). Layout is "nchw" for a 4-D activation
    # that was transposed to NCHW, "plain" for anything kept exactly as in TF.
    env = {}

    placeholders = [n for n in nodes if n["op"] == "Placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"expected one Placeholder, found {len(placeholders)}")
    ph = placeholders[0]
    dims = [int(d.get("size", -1)) for d in ph["attr"]["shape"]["shape"]["dim"]]
    if len(dims) != 4:
        raise ConversionError(f"input {ph['name']}: expected NHWC 4-D shape, got {dims}")
    in_name = b.unique(ph["name"])
    graph_input = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["N", dims[3], dims[1], dims[2]])
    env[ph["name"]] = (in_name, "nchw")

    def spatial(name):
        return shapes[name][1], shapes[name][2]

    def pads_for(src, kh, kw, sh, sw, padding, node_name):
        """Return (Conv/MaxPool pads attribute, input tensor) with asymmetric pads moved
        into an explicit Pad node."""
        tensor = env[src][0]
        if padding == "VALID":
            return [0, 0, 0, 0], tensor
        if padding != "SAME":
            raise ConversionError(f"{node_name}: padding {padding} not supported")
        h, w = spatial(src)
        (t, bo), (l, r) = same_pads(h, kh, sh), same_pads(w, kw, sw)
        if t == bo and l == r:
            return [t, l, bo, r], tensor
        p = b.const(node_name + "/pads", np.array([0, 0, t, l, 0, 0, bo, r], dtype=np.int64))
        return [0, 0, 0, 0], b.node("Pad", [tensor, p], node_name + "/same_pad", mode="constant")

    def need(name, layout):
        if name not in env:
            raise ConversionError(f"input {name} used before it was converted")
        if env[name][1] != layout:
            raise ConversionError(f"{name}: expected a {layout} tensor")
        return env[name][0]

    def activation(node, tensor, fused, args):
        k = 0
        for f in fused:
            if f == "BiasAdd":
                k += 1  # already the Conv's bias input
            elif f == "Relu":
                tensor = b.node("Relu", [tensor], node["name"])
            elif f == "Prelu":
                slope = weights[args[k]].reshape(-1, 1, 1).astype(np.float32)  # [C,1,1]: per channel
                tensor = b.node("PRelu", [tensor, b.const(args[k], slope)], node["name"])
                k += 1
            else:
                raise ConversionError(f"{node['name']}: fused op {f} not supported")
        return tensor

    for node in nodes:
        op, name, ins = node["op"], node["name"], input_names(node)
        if op in ("Const", "Placeholder"):
            continue
        if op in ("_FusedConv2D", "Conv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            check_nhwc(node)
            w = weights[ins[1]]
            kh, kw = w.shape[0], w.shape[1]
            strides = attr_list(node, "strides")
            pads, x = pads_for(ins[0], kh, kw, strides[1], strides[2], attr_str(node, "padding"), name)
            if "Depthwise" in op:
                c, mult = w.shape[2], w.shape[3]
                # HW C M -> (C*M) 1 H W; output channel c*M+m, as TF orders them.
                w_onnx = w.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)
                group = c
            else:
                w_onnx = w.transpose(3, 2, 0, 1)  # HWIO -> OIHW
                group = 1
            fused = attr_str_list(node, "fused_ops") if op.startswith(("_Fused", "Fused")) else []
            args = ins[2:]
            conv_in = [x, b.const(ins[1] + "/oihw", w_onnx.astype(np.float32))]
            if fused[:1] == ["BiasAdd"]:
                conv_in.append(b.const(args[0], weights[args[0]].reshape(-1).astype(np.float32)))
            elif any(f == "BiasAdd" for f in fused):
                raise ConversionError(f"{name}: BiasAdd must come first in fused_ops {fused}")
            out = b.node("Conv", conv_in, name, kernel_shape=[kh, kw], strides=[strides[1], strides[2]],
                         pads=pads, group=group, dilations=[1, 1])
            env[name] = (activation(node, out, fused, args), "nchw")
        elif op in ("Add", "AddV2"):
            env[name] = (b.node("Add", [need(ins[0], "nchw"), need(ins[1], "nchw")], name), "nchw")
        elif op == "Prelu":
            slope = weights[ins[1]].reshape(-1, 1, 1).astype(np.float32)
            env[name] = (b.node("PRelu", [need(ins[0], "nchw"), b.const(ins[1], slope)], name), "nchw")
        elif op in ("Relu", "Sigmoid"):
            src, layout = env[ins[0]]
            env[name] = (b.node(op, [src], name), layout)
        elif op == "MaxPool":
            check_nhwc(node)
            k, s = attr_list(node, "ksize"), attr_list(node, "strides")
            if attr_str(node, "padding") != "VALID":
                # SAME max pooling would need -inf padding; these models do not use it.
                raise ConversionError(f"{name}: only VALID MaxPool is supported")
            env[name] = (b.node("MaxPool", [need(ins[0], "nchw")], name, kernel_shape=[k[1], k[2]],
                                strides=[s[1], s[2]], pads=[0, 0, 0, 0]), "nchw")
        elif op == "Pad":
            p = weights[ins[1]].astype(np.int64)          # NHWC [[before, after], ...]
            p = p[[0, 3, 1, 2]]                           # -> NCHW order
            onnx_pads = np.concatenate([p[:, 0], p[:, 1]])
            env[name] = (b.node("Pad", [need(ins[0], "nchw"), b.const(ins[1] + "/nchw", onnx_pads)], name,
                                mode="constant"), "nchw")
        elif op == "ConcatV2":
            axis = int(weights[ins[-1]])
            srcs = ins[:-1]
            layouts = {env[s][1] for s in srcs}
            if layouts == {"nchw"}:
                axis = NHWC_TO_NCHW_AXIS[axis % 4]
            elif layouts != {"plain"}:
                raise ConversionError(f"{name}: mixed layouts in concat")
            env[name] = (b.node("Concat", [env[s][0] for s in srcs], name, axis=axis), layouts.pop())
        elif op == "Reshape":
            src, layout = env[ins[0]]
            if layout == "nchw":
                # TF reshapes NHWC memory order; go back to NHWC first.
                src = b.node("Transpose", [src], name + "/to_nhwc", perm=[0, 2, 3, 1])
            shape = b.const(ins[1] + "/i64", weights[ins[1]].astype(np.int64))
            env[name] = (b.node("Reshape", [src, shape], name), "plain")
        elif op == "Identity":
            env[name] = env[ins[0]]
        else:
            raise ConversionError(f"op {op} ({name}) is not supported by this converter")

    # Outputs: NHWC 4-D tensors are transposed back so that each output matches TF exactly.
    graph_outputs = []
    for out_name in outputs:
        src, layout = env[out_name]
        if layout == "nchw":
            b.node("Transpose", [src], out_name + "/to_nhwc", output=out_name, perm=[0, 2, 3, 1])
        else:
            b.node("Identity", [src], out_name + "/out", output=out_name)
        shape = ["N"] + [int(d) for d in shapes[out_name][1:]]
        graph_outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape))

    graph = helper.make_graph(b.nodes, "tfjs_converted", [graph_input], graph_outputs, b.initializers)
    model = helper.make_model(graph, producer_name="micromodels convert_tfjs_to_onnx.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 6  # the IR version that goes with opset 11
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------
# Check: evaluate the written ONNX graph with numpy (NCHW, ONNX semantics)
# --------------------------------------------------------------------------------------------

def onnx_conv(x, w, bias, strides, pads, group):
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    o, cin_g, kh, kw = w.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
    n, c, oh, ow = win.shape[:4]
    win = win.reshape(n, group, c // group, oh, ow, kh, kw)
    wg = w.reshape(group, o // group, cin_g, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def run_onnx_numpy(model, x_nchw):
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    vals = dict(init)
    vals[model.graph.input[0].name] = x_nchw
    for n in model.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [vals[k] for k in n.input]
        if n.op_type == "Conv":
            out = onnx_conv(i[0], i[1], i[2] if len(i) > 2 else None, a["strides"], a["pads"], a.get("group", 1))
        elif n.op_type == "PRelu":
            out = np.where(i[0] >= 0, i[0], i[0] * i[1])
        elif n.op_type == "Relu":
            out = np.maximum(i[0], 0)
        elif n.op_type == "Sigmoid":
            out = 1.0 / (1.0 + np.exp(-i[0]))
        elif n.op_type == "Add":
            out = i[0] + i[1]
        elif n.op_type == "MaxPool":
            kh, kw = a["kernel_shape"]
            sh, sw = a["strides"]
            out = np.lib.stride_tricks.sliding_window_view(i[0], (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].max(axis=(4, 5))
        elif n.op_type == "Pad":
            r = len(i[1]) // 2
            out = np.pad(i[0], [(int(i[1][k]), int(i[1][k + r])) for k in range(r)])
        elif n.op_type == "Concat":
            out = np.concatenate(i, axis=a["axis"])
        elif n.op_type == "Transpose":
            out = i[0].transpose(a["perm"])
        elif n.op_type == "Reshape":
            out = i[0].reshape([int(d) for d in i[1]])
        elif n.op_type == "Identity":
            out = i[0]
        else:
            raise ConversionError(f"check: ONNX op {n.op_type} not implemented in the numpy evaluator")
        vals[n.output[0]] = out.astype(np.float32)
    return {o.name: vals[o.name] for o in model.graph.output}


def write_check_file(path, tensors):
    with open(path, "wb") as f:
        f.write(b"MMCHK001")
        f.write(struct.pack("<I", len(tensors)))
        for name, arr in tensors:
            arr = np.ascontiguousarray(arr, dtype="<f4")
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<I", arr.ndim) + struct.pack(f"<{arr.ndim}i", *arr.shape))
            f.write(arr.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_json")
    ap.add_argument("output_onnx")
    ap.add_argument("--check", action="store_true", help="compare against a numpy reference of the TFJS graph")
    ap.add_argument("--check-out", help="write the check input and reference outputs to this file")
    ap.add_argument("--check-batch", type=int, default=2, help="batch size of the check input (default 2)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max abs difference allowed by --check")
    args = ap.parse_args()

    try:
        nodes, by_name, weights, outputs = load_tfjs(args.model_json)
        ph = next(n for n in nodes if n["op"] == "Placeholder")
        h, w, c = (int(d["size"]) for d in ph["attr"]["shape"]["shape"]["dim"][1:])

        # Shapes of every node from a batch-1 reference run (SAME padding needs them).
        probe = run_tfjs_reference(nodes, by_name, weights, outputs, np.zeros((1, h, w, c), np.float32))
        shapes = {k: v.shape for k, v in probe.items()}
        model = convert(nodes, by_name, weights, outputs, shapes)
        onnx.save(model, args.output_onnx)
        ops = sorted({n.op_type for n in model.graph.node})
        print(f"wrote {args.output_onnx}: {len(model.graph.node)} nodes ({', '.join(ops)}), "
              f"input {model.graph.input[0].name} [N,{c},{h},{w}] NCHW, "
              f"outputs {', '.join(o + str(list(shapes[o][1:])) for o in outputs)}")

        if args.check or args.check_out:
            # Values in [0, 1]: the range both models expect.
            rng = np.random.default_rng(12345)
            x = rng.random((args.check_batch, h, w, c), dtype=np.float32)
            ref = run_tfjs_reference(nodes, by_name, weights, outputs, x)
            got = run_onnx_numpy(model, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            worst = 0.0
            for o in outputs:
                if got[o].shape != ref[o].shape:
                    raise ConversionError(f"check: output {o} shape {got[o].shape} != reference {ref[o].shape}")
                diff = float(np.max(np.abs(got[o] - ref[o])))
                scale = float(np.max(np.abs(ref[o])))
                worst = max(worst, diff)
                print(f"check {o}: max abs diff {diff:.3g} (max |reference| {scale:.3g})")
            if args.check_out:
                write_check_file(args.check_out, [("input", x.transpose(0, 3, 1, 2))] + [(o, ref[o]) for o in outputs])
                print(f"wrote check data {args.check_out}")
            if worst > args.tolerance:
                raise ConversionError(f"check failed: max abs diff {worst:.3g} > tolerance {args.tolerance}")
            print(f"check passed: max abs diff {worst:.3g} <= {args.tolerance}")
    except (ConversionError, OSError, KeyError, ValueError) as e:
        print(f"convert_tfjs_to_onnx: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
