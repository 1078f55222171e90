"""A run's chosen discrete network for inference: written by ``writer`` (``lrnets-export``),
run and checked by ``runner`` (``lrnets-eval``), in NumPy integers by ``integer_inference``
and as QONNX by ``qonnx_export``. Nothing here imports torch at import time of the package, so
the integer runner works where torch is not installed."""
