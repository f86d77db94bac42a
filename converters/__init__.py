"""Post-training quantization of Keras models to TFLite, with an accuracy gate."""
