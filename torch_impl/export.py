"""The interchange weights as a plain PyTorch program: `torch.export` (.pt2) and ONNX (.onnx).

    module = build_module(weights, config)            # nn.Module: (ids, h, c) -> (logits, h, c)
    save_pt2(module, "m.pt2", metadata_json)          # torch.export.load("m.pt2").module()
    save_onnx(module, "m.onnx", metadata_json)        # onnxruntime.InferenceSession("m.onnx")

ids: int64 (B, T); h, c: float32 (L, B, H), the LSTM state of every layer stacked as nn.LSTM
stacks it (zeros to start); logits: float32 (B, T, V). Both B and T are dynamic in the saved
program. In the ONNX file h and c are optional (with_zero_state_default); the .pt2 program always
takes them, as torch.export traces no optional input (its ExportDB case "optional_input").
Called by common/export.py, which checks the input and writes atomically.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan  # a prototype API: the one loop torch.export keeps dynamic


class ExportedLSTM(nn.Module):
    """One-hot -> nn.LSTM -> nn.Linear, with the state in and out so one character at a time works.

    The weights live in an nn.LSTM (bias split as docs/DESIGN.md: b into bias_ih, zeros into bias_hh)
    and an nn.Linear. `forward` runs the same gate equations on those parameters with a scan over
    time, because torch.export traces nn.LSTM's own forward into one step per time position of the
    example input, fixing T; `forward_lstm` is nn.LSTM itself, for checking the two agree.
    """

    def __init__(self, vocab_size, hidden_size, num_layers):
        super().__init__()
        self.vocab_size = vocab_size
        self.lstm = nn.LSTM(vocab_size, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids, h, c):
        x = F.one_hot(ids, self.vocab_size).to(torch.float32)  # (B, T, V)
        hs, cs = [], []
        for l in range(self.lstm.num_layers):
            W_x = getattr(self.lstm, f"weight_ih_l{l}").T  # (in, 4H)
            W_h = getattr(self.lstm, f"weight_hh_l{l}").T  # (H, 4H)
            b = getattr(self.lstm, f"bias_ih_l{l}") + getattr(self.lstm, f"bias_hh_l{l}")  # (4H,)

            def step(carry, x_t, W_x=W_x, W_h=W_h, b=b):
                h_prev, c_prev = carry                        # (B, H) each
                z = x_t @ W_x + h_prev @ W_h + b              # (B, 4H)
                i, f, g, o = z.chunk(4, dim=-1)
                c_next = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
                h_next = torch.sigmoid(o) * torch.tanh(c_next)
                return (h_next, c_next), h_next.clone()       # scan wants outputs that alias no carry

            (h_l, c_l), x = scan(step, (h[l], c[l]), x, dim=1)  # x: (B, T, H)
            hs.append(h_l)
            cs.append(c_l)
        return self.head(x), torch.stack(hs), torch.stack(cs)  # (B, T, V), (L, B, H), (L, B, H)

    def forward_lstm(self, ids, h, c):
        """The same function through nn.LSTM (eager only)."""
        y, (h, c) = self.lstm(F.one_hot(ids, self.vocab_size).to(torch.float32), (h, c))
        return self.head(y), h, c


def build_module(weights, config):
    """An ExportedLSTM in float32 holding the interchange `weights` (dict name -> np.ndarray)."""
    module = ExportedLSTM(config.vocab_size, config.hidden_size, config.num_layers)
    as_tensor = lambda w: torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    with torch.no_grad():
        for l in range(config.num_layers):
            getattr(module.lstm, f"weight_ih_l{l}").copy_(as_tensor(weights[f"lstm.{l}.W_x"]).T)
            getattr(module.lstm, f"weight_hh_l{l}").copy_(as_tensor(weights[f"lstm.{l}.W_h"]).T)
            getattr(module.lstm, f"bias_ih_l{l}").copy_(as_tensor(weights[f"lstm.{l}.b"]))
            getattr(module.lstm, f"bias_hh_l{l}").zero_()
        module.head.weight.copy_(as_tensor(weights["head.W"]).T)
        module.head.bias.copy_(as_tensor(weights["head.b"]))
    return module.eval()


def example_inputs(module, batch_size=2, seq_length=3):
    """(ids, h, c) to trace with; B and T are then marked dynamic, so their values do not matter."""
    L, H = module.lstm.num_layers, module.lstm.hidden_size
    zeros = torch.zeros(L, batch_size, H)
    return torch.zeros(batch_size, seq_length, dtype=torch.int64), zeros, zeros.clone()


def dynamic_shapes():
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    return {"ids": {0: batch, 1: time}, "h": {1: batch}, "c": {1: batch}}


def exported_program(module):
    with torch.no_grad():
        return torch.export.export(module, example_inputs(module), dynamic_shapes=dynamic_shapes())


def save_pt2(module, path, metadata_json):
    """torch.export the module to `path`; metadata_json goes in as the extra file rosetta.json."""
    torch.export.save(exported_program(module), path, extra_files={"rosetta.json": metadata_json})


def save_onnx(module, path, metadata_json):
    """The module as one self-contained ONNX file, h and c optional; metadata_json as metadata_props["rosetta.json"]."""
    import onnx

    program = torch.onnx.export(module, example_inputs(module), dynamo=True, dynamic_shapes=dynamic_shapes(),
                                input_names=["ids", "h", "c"], output_names=["logits", "h_out", "c_out"],
                                verbose=False)
    proto = program.model_proto
    with_zero_state_default(proto, module.lstm.num_layers, module.lstm.hidden_size)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "rosetta.json", metadata_json
    onnx.save_model(proto, path, save_as_external_data=False)


def with_zero_state_default(proto, num_layers, hidden_size):
    """Make the inputs h and c optional in the ONNX graph `proto` (changed in place).

    ONNX's one way to default an input is an initializer of the same name, which a runtime uses
    when the input is not fed; the initializer is zeros (L, 1, H), so each graph input is first
    broadcast to (L, B, H) with B taken from ids (an Expand): {"ids": ids} alone is the fresh start,
    and a fed state of batch B, or of batch 1, passes through unchanged or broadcast.
    """
    from onnx import helper, numpy_helper

    names = {"h": "h_full", "c": "c_full"}

    def rename(graph):  # every use of h and c, also inside the Scan bodies, reads the broadcast state
        for node in graph.node:
            node.input[:] = [names.get(name, name) for name in node.input]
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    rename(sub)

    rename(proto.graph)
    one = numpy_helper.from_array(np.ones(1, dtype=np.int64), "state_default_one")
    nodes = [helper.make_node("Shape", ["ids"], ["state_default_batch"], start=0, end=1),  # (1,) = [B]
             helper.make_node("Concat", ["state_default_one", "state_default_batch", "state_default_one"],
                              ["state_default_shape"], axis=0)]                            # [1, B, 1]
    for name, full in names.items():
        nodes.append(helper.make_node("Expand", [name, "state_default_shape"], [full]))  # (L, B, H)
        proto.graph.initializer.append(
            numpy_helper.from_array(np.zeros((num_layers, 1, hidden_size), np.float32), name))
    for graph_input in proto.graph.input:
        if graph_input.name in names:  # B or 1
            graph_input.type.tensor_type.shape.dim[1].dim_param = "batch_or_1"
    proto.graph.initializer.append(one)
    for node in reversed(nodes):
        proto.graph.node.insert(0, node)
