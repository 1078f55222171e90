"""lrnets: neural networks with discrete weights trained by the local reparameterization trick
(Shayer, Levi & Fetaya, ICLR 2018)."""

__version__ = "0.1.0"


def pretrained(name: str, root=None):
    """A network the project ships, as a plain module: ``lrnets.pretrained("mnist_ternary")``
    (see ``lrnets.paper.shipping.pretrained``)."""
    from lrnets.paper.shipping import SHIPPED, pretrained as load

    return load(name, SHIPPED if root is None else root)
