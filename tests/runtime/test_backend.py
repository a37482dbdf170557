"""The backend seam (runtime/backend.py): the CPU backend shares host memory, and a backend that
keeps its own copies (as a GPU one will) computes the same and sees host edits after refresh."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.runtime.backend import CPU, CPUBackend, get_backend
from cnnlang.runtime.host_arrays import CACHE_LINE, host_empty

SOURCE = """
network tiny {
    input 2x6x6
    conv(4, 3x3, pad = 1) -> batchnorm -> relu
    maxpool(2)
    fc(3)
}
"""


class CopyingBackend(CPUBackend):
    """The CPU's kernels on arrays that are copies of the host's: what a device backend does."""

    shares_host_memory = False

    def to_device(self, host):
        return np.array(host, copy=True)

    def to_host(self, array):
        return np.array(array, copy=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("backend") / "tiny.cnn"
    path.write_text(SOURCE)
    return cnnlang.load(str(path))


def test_cpu_backend_shares_host_arrays(model):
    net = model.build(seed=0)
    assert net.backend is CPU and get_backend("cpu") is CPU and get_backend(None) is CPU
    op = next(s.op for s in net.plan.steps if s.node == "conv1")
    assert op.params["weight"] is net.params["conv1.weight"]
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        get_backend("tpu")


def test_a_copying_backend_computes_the_same_and_uploads_on_refresh(model):
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6))
    host = model.build(seed=0, dtype="float64", passes="all")
    device = model.build(seed=0, dtype="float64", passes="all", backend=CopyingBackend())
    op = next(s.op for s in device.plan.steps if s.node == "conv1")
    assert op.params["weight"] is not device.params["conv1.weight"]
    np.testing.assert_array_equal(device.forward(x), host.forward(x))
    for net in (host, device):
        net.set_param("conv1.weight", net.params["conv1.weight"] * 2)
    np.testing.assert_array_equal(device.forward(x), host.forward(x))
    np.testing.assert_array_equal(op.params["weight"], device.params["conv1.weight"])


def test_cpu_runs_never_load_numba_cuda(tmp_path):
    """numba.cuda (and its driver lookup) is imported by get_backend("cuda") only."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, cnnlang\n"
        f"net = cnnlang.load({str(tmp_path / 'tiny.cnn')!r}).build(passes='all')\n"
        "net.forward(np.zeros((1, 2, 6, 6)))\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n"
    )
    (tmp_path / "tiny.cnn").write_text(SOURCE)
    subprocess.run([sys.executable, "-c", script], check=True)


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float32), (7, np.float64), ((0,), np.float32), ((2, 1, 3), np.int64)])
def test_host_arrays_start_on_a_cache_line(shape, dtype):
    """host_arrays.host_empty and the CPU backend's empty and zeros: the shape and dtype asked for, C-contiguous,
    writable, starting on a 64-byte line (NumPy's own start 16, 32 or 48 bytes into one); zeros are zero."""
    for array in (host_empty(shape, dtype), CPU.empty(shape, dtype), CPU.zeros(shape, dtype)):
        assert array.shape == (shape if isinstance(shape, tuple) else (shape,)) and array.dtype == dtype
        assert array.flags.c_contiguous and array.flags.writeable
        assert array.ctypes.data % CACHE_LINE == 0 or array.size == 0  # (an empty array has no lines)
    assert not CPU.zeros(shape, dtype).any()


def test_the_kernels_scratch_and_packed_weights_start_on_a_cache_line():
    from cnnlang.runtime.kernels.cpu.pointwise import pack_panels, padded_bias, stacked_panels
    from cnnlang.runtime.kernels.cpu.workspace import ConvWorkspace

    workspace = ConvWorkspace()
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((40, 24)).astype(np.float32)
    for array in (workspace.get("columns", 1000, np.dtype(np.float32)), workspace.get("ones", 10, np.dtype(np.float64)),
                  pack_panels(weight), padded_bias(None, 40, np.float32),
                  stacked_panels(rng.standard_normal((16, 24, 40)).astype(np.float32))):
        assert array.ctypes.data % CACHE_LINE == 0
    assert np.all(workspace.get("ones", 10, np.dtype(np.float64)) == 1)
