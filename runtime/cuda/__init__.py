"""The CUDA backend (numba.cuda): :class:`backend.CUDABackend`, its ops (``ops/``) and the
device checks (``device.py``). Kernels live in ``runtime/kernels/cuda``. Imported only by
``get_backend("cuda")``: nothing else in cnnlang loads numba.cuda."""
