"""lpm_graph: Large Population Models as differentiable, time-unrolled GNNs on PyTorch Geometric."""
__version__ = "0.1.0"
