"""Training pipeline: plain Keras/TensorFlow, no Django."""

import os

# Before any module here imports TensorFlow: its C++ start-up notices, not the errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
