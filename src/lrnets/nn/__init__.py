"""The discrete layers and what they are made of, on torch alone: weight distributions
(``distributions``), the LRT Gaussian sample and its noise (``layers``, ``noise``), moment
propagation through sign networks (``moments``, ``sign_layers``), and the other ways of training
discrete weights (``sampled_layers``, ``quantized_layers`` with ``quantizers``)."""
