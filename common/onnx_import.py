"""The ONNX reader of `rosetta import` (common/importing.py): onnx and numpy only, no framework.

Two kinds of graph are read, in graph order:
  - `LSTM` nodes (torch.onnx.export of nn.LSTM, with either exporter; tf2onnx), a `Gather` from a
    (V, D) constant in front for an embedding, and a `MatMul` (+ `Add`) or `Gemm` head;
  - this project's own `rosetta export --to onnx`: one `Scan` per layer whose body is the gate
    equations (MatMul of the input, MatMul of h, Add of b, Split into i, f, g, o), the input
    one-hot, the same head.
A `Softmax` after the head is left out: the checkpoint holds the logits before it.
"""

import numpy as np
import onnx
from onnx import numpy_helper

from common.importing import Embedding, Head, LSTM, Source, SourceError, onnx_lstm

RECURRENT = {"GRU": "a GRU", "RNN": "a plain RNN (SimpleRNN)"}
# Keras 3's hard_sigmoid relu6(x + 3) / 6 is ONNX's HardSigmoid with alpha 1/6, beta 1/2
HARD_SIGMOID = (1 / 6, 0.5)


def constants(graph):
    """name -> np.ndarray of every initializer and Constant node's value (through Identity)."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def lstm_node(node, values, source):
    """An LSTM of one ONNX LSTM node, refusing what the interchange LSTM is not."""
    name, attrs = node.name or node.output[0], attributes(node)
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction != "forward":
        raise SourceError(f"LSTM node {name!r} of {source} runs {direction}; import a one-directional (forward) LSTM.")
    if len(node.input) > 7 and node.input[7]:
        raise SourceError(f"LSTM node {name!r} of {source} has peephole weights (input P), which the interchange "
                          f"LSTM does not; import an LSTM without peepholes.")
    if attrs.get("input_forget", 0) or "clip" in attrs:
        what = "couples its input and forget gates (input_forget)" if attrs.get("input_forget", 0) else "clips its cell (clip)"
        raise SourceError(f"LSTM node {name!r} of {source} {what}, which the interchange LSTM does not; import a plain LSTM.")
    activations = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    recurrent = "sigmoid"
    if activations:
        if activations[1:3] != ["Tanh", "Tanh"]:
            raise SourceError(f"LSTM node {name!r} of {source} uses {'/'.join(activations[1:3])} for its cell, where the "
                              f"interchange LSTM uses tanh; import an LSTM with the tanh cell activation.")
        alpha, beta = (list(attrs.get("activation_alpha", [])) + [0.2])[0], (list(attrs.get("activation_beta", [])) + [0.5])[0]
        if activations[0] == "HardSigmoid" and np.allclose((alpha, beta), HARD_SIGMOID):
            recurrent = "hard_sigmoid"
        elif activations[0] != "Sigmoid":
            raise SourceError(f"LSTM node {name!r} of {source} uses {activations[0]} gates; the interchange LSTM has "
                              f"sigmoid or Keras 3's hard sigmoid (HardSigmoid alpha 1/6, beta 0.5).")
    if len(node.input) < 4 or not node.input[3]:
        raise SourceError(f"LSTM node {name!r} of {source} has no bias (input B; use_bias=False); the interchange "
                          f"LSTM always has one: import an LSTM with a bias.")
    missing = [n for n in node.input[1:4] if n not in values]
    if missing:
        raise SourceError(f"the weights {missing[0]!r} of LSTM node {name!r} in {source} are computed in the graph, "
                          f"not stored; export the model with its weights as initializers (constants).")
    return LSTM(name, *onnx_lstm(*(values[n] for n in node.input[1:4])), recurrent_activation=recurrent)


def scan_node(node, values, source):
    """An LSTM of a Scan whose body is the gate equations as `rosetta export --to onnx` writes them."""
    body = attributes(node)["body"]
    h_in, x_in = body.input[0].name, body.input[-1].name
    W_x = W_h = b = None
    for n in body.node:
        if n.op_type == "MatMul" and n.input[1] in values:
            if n.input[0] == x_in:
                W_x = values[n.input[1]]
            elif n.input[0] == h_in:
                W_h = values[n.input[1]]
        elif n.op_type == "Add" and any(i in values and values[i].ndim == 1 for i in n.input):
            b = next(values[i] for i in n.input if i in values)
    ops = [n.op_type for n in body.node]
    if W_x is None or W_h is None or b is None or ops.count("Sigmoid") != 3 or ops.count("Tanh") != 2:
        raise SourceError(f"the Scan node {node.name or node.output[0]!r} of {source} is not an LSTM step as "
                          f"rosetta export writes it; import a graph of LSTM nodes or this project's own export.")
    return LSTM(node.name or node.output[0], W_x, W_h, b)


def head_nodes(graph, values, source):
    """(Head, softmax after it?) from the MatMul + Add or Gemm nodes that multiply by a constant."""
    heads = []
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in values and values[node.input[1]].ndim == 2:
            W, out = values[node.input[1]], node.output[0]
            adds = [n for n in consumers.get(out, []) if n.op_type == "Add"]
            b = next((values[i] for n in adds for i in n.input if i in values), None)
            out = adds[0].output[0] if adds else out
        elif node.op_type == "Gemm" and node.input[1] in values:
            attrs = attributes(node)
            W = values[node.input[1]].T if attrs.get("transB", 0) else values[node.input[1]]
            b = values.get(node.input[2]) if len(node.input) > 2 else None
            if b is not None:
                b = np.broadcast_to(attrs.get("beta", 1.0) * b, (W.shape[1],))
            W, out = attrs.get("alpha", 1.0) * W, node.output[0]
        else:
            continue
        if b is None:
            raise SourceError(f"the head {node.name or node.output[0]!r} of {source} has no bias (use_bias=False); "
                              f"the interchange head always has one: import a model whose head has a bias.")
        softmax = any(n.op_type in ("Softmax", "LogSoftmax") for n in consumers.get(out, []))
        heads.append(Head(node.name or node.output[0], W, np.asarray(b), softmax))
    return heads


def read(path):
    """A Source from the ONNX file at `path`."""
    source = str(path)
    try:
        graph = onnx.load(source).graph
    except Exception as e:  # protobuf's DecodeError and onnx's own errors share no base class
        raise SourceError(f"{source} is not a readable ONNX file ({type(e).__name__}); export the model again.") from None
    values = constants(graph)
    layers = []
    for node in graph.node:
        if node.op_type in RECURRENT:
            raise SourceError(f"node {node.name or node.output[0]!r} of {source} is {RECURRENT[node.op_type]}, not an "
                              f"LSTM; import a model of LSTM layers.")
        if node.op_type == "Gather" and node.input[0] in values and values[node.input[0]].ndim == 2 \
                and np.issubdtype(values[node.input[0]].dtype, np.floating):
            layers.append(Embedding(node.name or node.output[0], values[node.input[0]]))
        elif node.op_type == "LSTM":
            layers.append(lstm_node(node, values, source))
        elif node.op_type == "Scan":
            layers.append(scan_node(node, values, source))
    heads = head_nodes(graph, values, source)
    notes = ["the source applies a softmax after its head; the checkpoint holds the logits before it"] \
        if any(h.softmax for h in heads) else []
    return Source(layers + heads, notes=notes)
