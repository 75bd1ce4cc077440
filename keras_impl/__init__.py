"""The Keras 3 implementation, one file on the TensorFlow, JAX and PyTorch backends (KERAS_BACKEND):
keras_impl.model.CharLSTM, a keras.Model (path "layer" or "cell"), behind keras_impl.plumbing.Interface;
keras_impl.fast.CharLSTM, the TensorFlow-tuned path "fast"."""
