"""Training pipeline: plain Keras/TensorFlow, no Django."""
