"""dimfix: repair PyTorch layer sizes in source code."""

__version__ = "0.1.0"
