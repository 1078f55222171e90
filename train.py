"""Train an LR-net: `python train.py dataset=cifar10 mode=ternary` (see README.md)."""
from lrnets.cli import main

if __name__ == "__main__":
    main()
