"""lrnets: neural networks with discrete weights trained by the local reparameterization trick
(Shayer, Levi & Fetaya, ICLR 2018)."""

__version__ = "0.1.0"
