"""lpm_graph: Large Population Models as differentiable, time-unrolled GNNs on PyTorch Geometric."""
import os

# torch allocates large CPU tensors page-aligned on transparent huge pages with this set (read once, at
# torch's first allocation, so it must precede it): an unrolled run's resident memory then stays bounded
# and its steps run faster (BENCHMARKS.md, "The model-agnostic core against the version before it").  A value the user set is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
