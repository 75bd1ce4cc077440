"""The Keras 3 (TensorFlow backend) implementation: keras_impl.model.CharLSTM, path "layer" or "cell"."""
