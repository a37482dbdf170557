"""Data-parallel training throughput on 1 and 2 ranks (one thread each), and how much of the
gradient Allreduce hides behind backward.

    python benchmarks/bench_distributed.py [--models lenet5 resnet20] [--batch 32] [--steps 40]

Each configuration runs under ``mpiexec -n RANKS`` with NUMBA_NUM_THREADS=1. A step is what
``cnnlang train`` does: forward in training mode on this rank's ``--batch`` images (random data,
float32), softmax cross-entropy, backward with the bucketed non-blocking Allreduce started from
backward, waiting for the sums and the step's status exchange, and SGD. images/s counts all ranks'
images over ``--steps`` steps after 5 warm-up steps.

Overlap: "hidden" is the share of the gradient bytes whose Allreduce had completed when this
rank's backward returned (each bucket's request is tested between layers and once more at the
end of backward), averaged over the steps. "exposed" is the time from the moment the *last*
rank's backward returned to the moment this rank had its sums (one host, one monotonic clock, so
waiting for a slower rank is left out); "comm" is the same buckets' Allreduce run alone
(blocking, after a barrier; median of 20). The extra Allreduce that collects the end times is
inside the step time, so images/s for 2 ranks is slightly pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARMUP = 5


def worker(model_name: str, batch: int, steps: int) -> None:
    from cnnlang.environment import tune_threads

    tune_threads()  # as the command line does, before NumPy loads (cnnlang/environment.py)
    import numpy as np

    import cnnlang
    from cnnlang.train.config import TrainConfig
    from cnnlang.train.distributed import MPITeam, Team, connect
    from cnnlang.train.losses import softmax_cross_entropy
    from cnnlang.train.optim import make_optimizer

    team = connect()
    model = cnnlang.load(model_name)
    network = model.build(seed=0, dtype="float32").train()
    optimizer = make_optimizer("sgd", network.params, network.grads, network.trainable, lr=0.01, momentum=0.9,
                               weight_decay=5e-4, nesterov=False, no_decay=[])
    config = TrainConfig(model=model_name, data="random", batch_size=batch, ranks=team.size)
    team.attach(SimpleNamespace(network=network, config=config, optimizer=optimizer,
                                data=SimpleNamespace(train=range(batch * team.size))))
    rng = np.random.default_rng(team.rank)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    y = rng.integers(0, model.output_shape[0], batch)
    exposed, backward, hidden = [], [], []
    for step in range(WARMUP + steps):
        if step == WARMUP:
            started = time.perf_counter()
        logits = network.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        dlogits /= team.size
        team.backward(network, dlogits)
        team.finish_step(None, np.array([loss * batch, 0.0, batch]), False)
        optimizer.step()
        if step >= WARMUP and isinstance(team, MPITeam):
            # Exposed: from the last rank's end of backward (one host: one monotonic clock) to the sums.
            last = np.array([team.backward_done_at])
            team.comm.Allreduce(team.MPI.IN_PLACE, last, op=team.MPI.MAX)
            exposed.append(max(0.0, team.summed_at - last[0]))
            backward.append(team.backward_seconds)
            hidden.append(team.hidden_fraction)
    seconds = time.perf_counter() - started
    result = {"model": model_name, "ranks": team.size, "batch": batch,
              "images_per_s": steps * batch * team.size / seconds, "step_ms": 1e3 * seconds / steps}
    if isinstance(team, MPITeam):
        flats = [bucket.flat for bucket in team.buckets]
        times = []
        for _ in range(20):
            team.comm.Barrier()
            t = time.perf_counter()
            for flat in flats:
                team.comm.Allreduce(team.MPI.IN_PLACE, flat, op=team.MPI.SUM)
            times.append(time.perf_counter() - t)
        comm = statistics.median(times)
        mean_exposed = statistics.mean(exposed)
        result.update(buckets=len(flats), bytes=int(sum(f.nbytes for f in flats)), comm_ms=1e3 * comm,
                      exposed_ms=1e3 * mean_exposed, backward_ms=1e3 * statistics.mean(backward),
                      hidden=statistics.mean(hidden))
    else:
        assert isinstance(team, Team)
    if team.rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    parser.add_argument("--batch", type=int, default=32, help="per rank")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch, args.steps)
        return
    from cnnlang.train.launch import find_mpiexec, mpiexec_options

    mpiexec = find_mpiexec()
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    print(f"{'model':<10} {'ranks':>5} {'img/s':>8} {'step ms':>8} {'backward ms':>11} {'comm ms':>8} "
          f"{'exposed ms':>10} {'hidden':>7} {'buckets':>7}")
    for model in args.models:
        for ranks in (1, 2):
            command = [mpiexec, *mpiexec_options(mpiexec), "-n", str(ranks), sys.executable, __file__,
                       "--worker", model, "--batch", str(args.batch), "--steps", str(args.steps)]
            output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
            r = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
            extra = (f"{r['backward_ms']:>11.1f} {r['comm_ms']:>8.2f} {r['exposed_ms']:>10.2f} {r['hidden']:>7.0%} "
                     f"{r['buckets']:>7}") if ranks > 1 else f"{'':>11} {'':>8} {'':>10} {'':>7} {'':>7}"
            print(f"{model:<10} {ranks:>5} {r['images_per_s']:>8.0f} {r['step_ms']:>8.1f} {extra}", flush=True)


if __name__ == "__main__":
    main()
