"""The architectures, each defined once over its building blocks (``architectures``): a ReLU,
sign (``sign``) or exported-inference network is the same architecture with other blocks."""
