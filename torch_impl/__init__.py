"""The PyTorch implementation: model.py holds CharLSTM, an nn.Module on nn.LSTM (path "layer") or on
the gate equations in torch ops (path "cell"); plumbing.py's Interface holds one behind the numpy
interface the shared loop uses. Imports torch only, never tensorflow or keras."""
