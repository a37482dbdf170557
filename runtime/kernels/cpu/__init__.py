"""The CPU backend's Numba kernels on channels-last arrays; each module has a float32 and a float64
path. A second backend's kernels go in a sibling package (``kernels/cuda``)."""
