"""The PyTorch reader of `rosetta import` (common/importing.py): a state_dict saved with
torch.save(model.state_dict()), read with weights_only=True (no code in the file runs), its
tensors as numpy arrays; common.importing.state_dict_source tells them apart by name and shape."""

import pickle

import torch

from common.importing import SourceError, state_dict_source


def read(path, mapping=None):
    """A Source from the state_dict at `path`; mapping: --map renames {name: canonical name}."""
    source = str(path)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise SourceError(f"{source} cannot be read as a state_dict with weights_only=True ({str(e).splitlines()[0][:120]}); "
                          f"save it with torch.save(model.state_dict(), path), not the whole model.") from None
    if not isinstance(state, dict) or not state:
        raise SourceError(f"{source} holds a {type(state).__name__}, not a state_dict; save it with "
                          f"torch.save(model.state_dict(), path).")
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise SourceError(f"{source} holds {name!r}, a {type(value).__name__} rather than a tensor, so it is not a "
                              f"state_dict; save model.state_dict() alone.")
        tensors[name] = value.detach().cpu().numpy()
    return state_dict_source(tensors, source, mapping)
