"""Data-parallel training over MPI: N processes ("ranks") each run the same network on their own
part of every global batch and sum their gradients with Allreduce, so N ranks x batch B compute
what one process computes with batch N*B.

- Rank 0's parameters, buffers and optimiser slots are broadcast once at the start.
- Each rank scales its loss gradient by (its examples / the global batch), so summed gradients
  are exactly the global batch's mean gradient, whatever the shard sizes.
- Gradients live in flat buckets: every parameter's gradient array is a view into its bucket,
  so the Allreduce runs in place, with no packing. Buckets hold parameters in reverse layer
  order, the order backward finishes them; a bucket's non-blocking Allreduce starts as soon as
  its last layer's backward returns, and runs while the earlier layers' backward computes.
- Every step ends with one small Allreduce of the step's status (loss and accuracy sums, a stop
  request, and which ranks failed). A rank that fails still sends its buckets, so the others
  never wait on it; then every rank stops with the failing rank's message.
- Every wait polls with a deadline: a rank that died or hangs makes the others stop (MPI_Abort)
  after ``timeout`` seconds instead of waiting forever.
- Batchnorm uses each rank's own batch statistics (as PyTorch's DDP does) and rank 0's running
  statistics; with ``sync_bn`` the statistics are the global batch's, which makes N ranks exactly
  equivalent to one.

(~440 lines: the team, its buckets and its fault protocol share the same requests and deadlines;
the launcher and the data sharding already live elsewhere, launch.py and data/batches.py.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from typing import Iterator

import numpy as np

from cnnlang.data import Dataset, Normalizer
from cnnlang.data.batches import shard_slice
from cnnlang.errors import UsageError
from cnnlang.runtime.ops.base import scratch
from cnnlang.runtime.ops.norm import BatchNormOp

from .evaluate import Evaluation, evaluate
from .metrics import ConfusionMatrix

# Set by mpiexec/mpirun (Open MPI, PMIx launchers, MPICH's Hydra) in every rank's environment.
_LAUNCH_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK")
DEFAULT_TIMEOUT = 300.0
DEFAULT_BUCKET_BYTES = 256 * 1024
_MESSAGE_BYTES = 2048
_DROPOUT_TAG = 0x64726F70


class RankFailed(UsageError):
    """A rank failed; every rank raises this with the same message (rank 0 prints it)."""

    def __init__(self, rank: int, message: str):
        super().__init__(f"rank {rank}: {message}")
        self.rank = rank


class CollectiveTimeout(UsageError):
    """The other ranks did not answer in time: one of them died or hangs."""


def launched_by_mpi() -> bool:
    return any(name in os.environ for name in _LAUNCH_VARIABLES)


class Team:
    """The ranks training together, as one process sees them; this base class is one process
    alone, where every hook does nothing and errors pass through unchanged."""

    rank = 0
    size = 1

    @property
    def writes(self) -> bool:
        """Only rank 0 writes the run folder (metrics, plots, checkpoints)."""
        return self.rank == 0

    def dropout_key(self) -> tuple[int, ...]:
        return ()

    def agree(self, failure: BaseException | None) -> None:
        """Raise on every rank if ``failure`` happened on any."""
        if failure is not None:
            raise failure

    def attach(self, trainer) -> None:
        """Called once every rank has built its trainer."""

    def backward(self, network, dlogits: np.ndarray) -> None:
        network.backward(dlogits)

    def finish_step(self, failure: BaseException | None, sums: np.ndarray, stop: bool) -> tuple[np.ndarray, bool]:
        """After backward: wait for the gradients, and return the global (loss sum, correct,
        seen) and whether any rank asked to stop."""
        self.agree(failure)
        return sums, stop

    def evaluate(self, network, dataset: Dataset, normalizer: Normalizer, batch_size: int) -> Evaluation:
        return evaluate(network, dataset, normalizer, batch_size)

    def describe(self, batch_size: int) -> dict:
        """What the metrics log records about the layout."""
        return {"ranks": self.size, "global_batch": self.size * batch_size}

    @contextlib.contextmanager
    def abort_on_error(self) -> Iterator[None]:
        yield


class MPITeam(Team):
    def __init__(self, comm, timeout: float = DEFAULT_TIMEOUT, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = timeout
        self.bucket_bytes = bucket_bytes
        self.buckets: list[_Bucket] = []
        self._bucket_of: dict[str, list[_Bucket]] = {}
        self._next = 0  # the next bucket to send: buckets go out in the same order on every rank
        self._buffers: np.ndarray | None = None
        self.sync_buffers = False
        # Per step, for the overlap measurement (perf_counter times): backward's end, the sums'
        # arrival, and the seconds in backward (sends included) and waiting after it.
        self.backward_done_at = self.summed_at = 0.0
        self.backward_seconds = self.wait_seconds = self.hidden_fraction = 0.0
        self._backward_started = 0.0

    # -- setup
    def dropout_key(self) -> tuple[int, ...]:
        # Each shard draws its own dropout masks (the same seed on every rank would correlate them).
        return (self.rank, _DROPOUT_TAG)

    def attach(self, trainer) -> None:
        network, config = trainer.network, trainer.config
        self.agree(self._layout_problem(trainer) or self._settings_problem(config))
        if config.sync_bn:
            for step in network.plan.steps:
                if type(step.op) is BatchNormOp:
                    step.op = SyncBatchNorm(step.op, self)
        self._make_buckets(network)
        self._broadcast(list(network.params.values()) + list(network.buffers.values())
                        + [a for slot in trainer.optimizer.slots.values() for a in slot.values()], "sending rank 0's weights")
        network.refresh()
        # Per-rank batchnorm moves each rank's running statistics differently; rank 0's are the
        # model's, as in DDP, and every rank takes them before each step.
        self.sync_buffers = bool(network.buffers) and not config.sync_bn
        if self.sync_buffers:
            self._buffers = np.empty(sum(a.size for a in network.buffers.values()), network.dtype)
        self._network = network

    def _layout_problem(self, trainer) -> UsageError | None:
        """The same on every rank: an epoch whose last global batch leaves a rank nothing."""
        size = trainer.config.batch_size * self.size
        last = len(trainer.data.train) % size
        if 0 < last < self.size:
            return UsageError(
                f"the epoch's last batch holds {last} example(s), fewer than the {self.size} ranks; change --batch or "
                f"--limit so that {len(trainer.data.train):,} training examples leave 0 or at least {self.size}"
            )
        return None

    def _settings_problem(self, config) -> UsageError | None:
        """Every rank must run rank 0's settings (a launcher could start them with different ones)."""
        digest = np.frombuffer(hashlib.sha256(json.dumps(config.outcome(), sort_keys=True).encode()).digest(), np.uint8).copy()
        ours = digest.copy()
        self._broadcast([digest], "comparing settings")
        if not np.array_equal(digest, ours):
            return UsageError("this rank was started with other training settings than rank 0; start every rank with the same options")
        return None

    def _make_buckets(self, network) -> None:
        trainable = set(network.trainable)
        bucket: _Bucket | None = None
        for step in reversed(network.plan.steps):
            for name, grad in step.op.grads.items():
                key = f"{step.node}.{name}"
                if key not in trainable:
                    continue
                if bucket is None or bucket.nbytes >= self.bucket_bytes:
                    bucket = _Bucket()
                    self.buckets.append(bucket)
                bucket.add(step, name, key, grad)
                self._bucket_of.setdefault(step.node, [])
                if bucket not in self._bucket_of[step.node]:
                    self._bucket_of[step.node].append(bucket)
        for bucket in self.buckets:
            bucket.allocate(network)
            bucket.reset()

    # -- a step
    def backward(self, network, dlogits: np.ndarray) -> None:
        self._backward_started = time.perf_counter()
        network.backward(dlogits, on_grads=self.on_grads)

    def on_grads(self, node: str) -> None:
        for bucket in self._bucket_of.get(node, ()):
            bucket.waiting.discard(node)
        while self._next < len(self.buckets) and not self.buckets[self._next].waiting:
            self._send(self.buckets[self._next])
        # Open MPI moves non-blocking collectives on only inside MPI calls: test them here, between
        # layers, so they progress during backward rather than all at the end.
        self._test_sent()

    def _test_sent(self) -> None:
        for bucket in self.buckets[:self._next]:
            if not bucket.done and bucket.request.Test():
                bucket.done = True

    def _send(self, bucket: "_Bucket") -> None:
        bucket.request = self.comm.Iallreduce(self.MPI.IN_PLACE, bucket.flat, op=self.MPI.SUM)
        self._next += 1

    def finish_step(self, failure, sums, stop):
        backward_done = time.perf_counter()
        self._test_sent()
        # The overlap achieved: the share of the gradient bytes summed before backward ended.
        self.hidden_fraction = sum(b.flat.nbytes for b in self.buckets if b.done) / max(1, sum(b.flat.nbytes for b in self.buckets))
        while self._next < len(self.buckets):  # a failed rank sends what it has, so no one waits on it
            self._send(self.buckets[self._next])
        self._wait([b.request for b in self.buckets], "summing gradients")
        self.summed_at = time.perf_counter()
        self.backward_done_at = backward_done
        self.wait_seconds = self.summed_at - backward_done
        self.backward_seconds = backward_done - self._backward_started
        totals = self._exchange(failure, np.append(sums, float(stop)), "exchanging the step's status")
        self._next = 0
        for bucket in self.buckets:
            bucket.reset()
        if self.sync_buffers:
            self._broadcast_buffers()
        return totals[:-1], bool(totals[-1])

    def _broadcast_buffers(self) -> None:
        arrays = list(self._network.buffers.values())
        flat, offset = self._buffers, 0
        for a in arrays:
            flat[offset:offset + a.size] = a.reshape(-1)
            offset += a.size
        self._wait([self.comm.Ibcast(flat, root=0)], "sending rank 0's batchnorm statistics")
        offset = 0
        for a in arrays:
            a.reshape(-1)[...] = flat[offset:offset + a.size]
            offset += a.size

    # -- agreement
    def agree(self, failure: BaseException | None) -> None:
        self._exchange(failure, np.zeros(0), "checking that every rank is ready")

    def _exchange(self, failure: BaseException | None, sums: np.ndarray, what: str) -> np.ndarray:
        """Sum ``sums`` over the ranks, with one flag per rank saying whether it failed; if any
        did, raise RankFailed with the first failed rank's message on every rank."""
        status = np.zeros(len(sums) + self.size)
        status[:len(sums)] = sums
        status[len(sums) + self.rank] = failure is not None
        self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, status, op=self.MPI.SUM)], what)
        failed = np.flatnonzero(status[len(sums):])
        if len(failed) == 0:
            return status[:len(sums)]
        first = int(failed[0])
        message = np.zeros(_MESSAGE_BYTES, np.uint8)
        if self.rank == first:
            text = str(failure) or type(failure).__name__
            if not isinstance(failure, (UsageError, MemoryError, OSError, ValueError)):
                text = f"{type(failure).__name__}: {text}"
            encoded = text.encode()[:_MESSAGE_BYTES]
            message[:len(encoded)] = np.frombuffer(encoded, np.uint8)
        self._wait([self.comm.Ibcast(message, root=first)], "reporting a failure")
        text = bytes(message).rstrip(b"\0").decode(errors="replace")
        others = ""
        if len(failed) == self.size:
            others = " (on every rank)"
        elif len(failed) > 1:
            others = f" (ranks {', '.join(map(str, failed[1:]))} failed too)"
        raise RankFailed(first, text + others)

    def allreduce(self, array: np.ndarray, what: str) -> None:
        """Sum ``array`` over the ranks, in place."""
        self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)], what)

    def _broadcast(self, arrays: list[np.ndarray], what: str) -> None:
        self._wait([self.comm.Ibcast(a, root=0) for a in arrays], what)

    def _wait(self, requests: list, what: str) -> None:
        """Poll until every request completes; give up after ``timeout`` seconds."""
        requests = [r for r in requests if r is not None]
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not self.MPI.Request.Testall(requests):
            if time.monotonic() > deadline:
                raise CollectiveTimeout(
                    f"rank {self.rank}: the other ranks did not answer within {self.timeout:g} s while {what}; "
                    "one of them has stopped or hangs"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    # -- validation
    def evaluate(self, network, dataset, normalizer, batch_size):
        """Each rank evaluates its part of the dataset; the sums are combined."""
        part = np.arange(len(dataset))[shard_slice(len(dataset), self.rank, self.size)]
        classes = network.model.output_shape[0]
        local = None
        if len(part):
            local = evaluate(network, dataset.subset(part), normalizer, batch_size)
        sums = np.zeros(3 + classes * classes)
        if local is not None:
            sums[:3] = local.loss * local.count, local.top5 * local.count, local.count
            sums[3:] = local.confusion.matrix.reshape(-1)
        self.allreduce(sums, "combining the validation results")
        confusion = ConfusionMatrix(classes)
        confusion.matrix[...] = sums[3:].reshape(classes, classes).round().astype(np.int64)
        count = int(round(sums[2]))
        return Evaluation(sums[0] / count, confusion.accuracy, sums[1] / count, confusion, count)

    # -- errors nobody agreed on
    @contextlib.contextmanager
    def abort_on_error(self) -> Iterator[None]:
        """An error only this rank saw (a timeout, a failed write on rank 0) cannot be agreed on:
        say which rank it was and abort every rank, rather than leave the others waiting."""
        try:
            yield
        except (RankFailed, SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:  # noqa: BLE001 - any error here must end every rank
            text = str(error) if isinstance(error, UsageError) else f"{type(error).__name__}: {error}"
            prefix = "" if text.startswith(f"rank {self.rank}:") else f"rank {self.rank}: "
            # sys.__stderr__: a live progress bar may be holding sys.stderr's output back.
            print(f"cnnlang: error: {prefix}{text}; stopping every rank", file=sys.__stderr__, flush=True)
            # mpiexec forwards output asynchronously, and Abort kills at once: give it a moment.
            time.sleep(0.5)
            self.comm.Abort(1)


class _Bucket:
    """Gradients of consecutive parameters (in backward's order) sharing one flat array."""

    def __init__(self) -> None:
        self.members: list[tuple[object, str, str, tuple[int, ...]]] = []
        self.nodes: set[str] = set()
        self.nbytes = 0
        self.flat: np.ndarray | None = None
        self.request = None
        self.done = False
        self.waiting: set[str] = set()

    def add(self, step, name: str, key: str, grad: np.ndarray) -> None:
        self.members.append((step, name, key, grad.shape))
        self.nodes.add(step.node)
        self.nbytes += grad.nbytes

    def allocate(self, network) -> None:
        """Rebind every member's gradient to a view of one flat array (ops write gradients in
        place and the optimiser looks them up by name at each step, so both see the views)."""
        self.flat = np.zeros(sum(int(np.prod(shape)) for *_, shape in self.members), network.dtype)
        offset = 0
        for step, name, key, shape in self.members:
            size = int(np.prod(shape))
            view = self.flat[offset:offset + size].reshape(shape)
            offset += size
            step.op.grads[name] = network.grads[key] = view

    def reset(self) -> None:
        self.request = None
        self.done = False
        self.waiting = set(self.nodes)


class SyncBatchNorm(BatchNormOp):
    """Batchnorm whose training-mode statistics are the global batch's: the per-channel sums
    (forward: of x, then of squared deviations; backward: of dy and dy * xhat) are summed over
    the ranks. Eval mode is the plain op (the running statistics are the same on every rank).
    A skip the training plan fused into it (a second input) is added before the relu, as there."""

    def __init__(self, original: BatchNormOp, team: MPITeam):
        self.__dict__.update(original.__dict__)
        self._team = team
        self._rows = 0

    def forward(self, inputs, out, ctx) -> None:
        if not ctx.train:
            super().forward(inputs, out, ctx)
            return
        c = self._channels
        x = inputs[0].reshape(-1, c)
        sums = np.empty(c + 1)
        sums[:c] = x.sum(axis=0)
        sums[c] = x.shape[0]
        self._team.allreduce(sums, "summing batchnorm statistics")
        rows = int(round(sums[c]))
        if rows < 2:
            raise ValueError(f"batchnorm in training mode needs more than one value per channel, got {rows} in the global batch")
        mean = sums[:c] / rows
        deviation = x - mean.astype(self.dtype)
        squares = np.einsum("rc,rc->c", deviation, deviation, dtype=np.float64)
        self._team.allreduce(squares, "summing batchnorm statistics")
        variance = squares / rows
        self._mean[...] = mean
        self._invstd[...] = 1.0 / np.sqrt(variance + self._eps)
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1.0 - self._momentum
        running_mean += self._momentum * mean
        running_var *= 1.0 - self._momentum
        running_var += self._momentum * variance * rows / (rows - 1.0)
        gamma = self.params["gamma"] if self._affine else self._ones
        beta = self.params["beta"] if self._affine else self._zeros
        np.multiply(deviation, gamma * self._invstd, out=out.reshape(-1, c))
        out.reshape(-1, c)[...] += beta
        if self._residual:
            out += inputs[1]
        if self.activation == "relu":  # the relu the training plan fused into this batchnorm
            np.maximum(out, 0, out=out)  # (NaN stays NaN, as relu_forward)
        self._x, self._train, self._rows, self._out = x, True, rows, out

    def backward(self, dy):
        if not self._train:
            return super().backward(dy)
        c = self._channels
        gamma = self.params["gamma"] if self._affine else self._ones
        shape = dy.shape
        dy = dy.reshape(-1, c)
        if self.activation == "relu":  # the fused relu's gradient first
            dy = np.where(self._out.reshape(-1, c) > 0, dy, 0).astype(self.dtype, copy=False)
        xhat = (self._x - self._mean) * self._invstd
        local = np.empty(2 * c)
        local[:c] = dy.sum(axis=0)
        local[c:] = np.einsum("rc,rc->c", dy, xhat, dtype=np.float64)
        # This rank's parameter gradients are its own sums: the gradient Allreduce adds the rest.
        self.grads.get("beta", self._dbeta)[...] = local[:c]
        self.grads.get("gamma", self._dgamma)[...] = local[c:]
        total = local.copy()
        self._team.allreduce(total, "summing batchnorm gradients")
        self._dx = scratch(self._dx, shape, self.dtype)
        self._dx.reshape(-1, c)[...] = (gamma * self._invstd) * (dy - total[:c] / self._rows - xhat * (total[c:] / self._rows))
        grads = [self._dx if self.need_input_grad[0] else None]
        if self._residual:  # the skip's gradient: the relu's (a new array) or dy itself, never written into
            grads.append(dy.reshape(shape) if self.need_input_grad[1] else None)
        return grads


def connect(timeout: float = DEFAULT_TIMEOUT) -> Team:
    """The team this process belongs to: MPI's world when started by mpiexec, else one process."""
    if not launched_by_mpi():
        return Team()
    try:
        from mpi4py import MPI
    except ImportError:
        raise UsageError("started by mpiexec, but mpi4py is not installed: pip install 'cnnlang[mpi]'") from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return Team()
    return MPITeam(MPI.COMM_WORLD, timeout)
