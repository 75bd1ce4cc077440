"""The PyTorch implementation: model.py holds CharLSTM on nn.LSTM (path "layer") and on the gate
equations in torch ops (path "cell"). Imports torch only, never tensorflow or keras."""
