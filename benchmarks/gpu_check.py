"""The Python steps of benchmarks/gpu_check.sh: whole-network checks of the cuda backend.

    python benchmarks/gpu_check.py zoo RESULT.json [--tiny] [--models NAME ...]
        every zoo model's eval-mode forward on cuda against the CPU (float32, batch 2, random
        weights and inputs), with all optimisation passes and without: relative error
        max|cuda - cpu| / max|cpu| below 1e-4 passes; --models checks only those zoo models
    python benchmarks/gpu_check.py training RESULT.json CPU_RUN CUDA_RUN
        two `cnnlang train` run folders: the last epoch's test accuracy on cuda within 0.3
        percentage points of the CPU's
    python benchmarks/gpu_check.py tiny-data FOLDER
        a micro model and a two-class IDX dataset, for a dry run of the training step

Each check prints one line starting with PASS or FAIL, writes its numbers to RESULT.json, and
exits 1 when it fails. ``--tiny`` (and the micro data) let the whole script run under Numba's
CUDA simulator (``gpu_check.sh --dry-run``) in minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FORWARD_TOLERANCE = 1e-4  # float32 through up to ~150 layers; a wrong kernel gives > 1e-2
ACCURACY_POINTS = 0.3
MICRO = "network micro {\n    input 1x6x6\n    conv(4, 3x3, pad = 1) -> batchnorm -> relu\n    maxpool(2x2, stride = 2)\n    flatten\n    fc(2)\n}\n"


def relative_error(got, want) -> float:
    import numpy as np

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if not (np.isfinite(got).all() and np.isfinite(want).all()):
        return float("inf")
    scale = float(np.abs(want).max())
    return float(np.abs(got - want).max()) / scale if scale > 0 else float(np.abs(got).max())


def check_zoo(result_file: Path, tiny: bool, models: list[str] | None = None) -> bool:
    import numpy as np

    import cnnlang

    names = [str(micro_model(Path(result_file).parent))] if tiny else models or cnnlang.zoo_names()
    rows, failed = [], []
    for name in names:
        model = cnnlang.load(name)
        x = np.random.default_rng(0).standard_normal((2, *model.input_shape)).astype(np.float32)
        for passes in ("all", "none"):
            start = time.perf_counter()
            try:
                outputs = {device: model.build(seed=1, passes=passes, device=device).eval().forward(x) for device in ("cpu", "cuda")}
                error = relative_error(outputs["cuda"], outputs["cpu"])
                problem = None if error < FORWARD_TOLERANCE else f"relative error {error:.2e}"
            except Exception as exception:  # noqa: BLE001 - one model's failure is a row, the others still run
                error, problem = None, f"{type(exception).__name__}: {exception}"
            rows.append({"model": model.name, "passes": passes, "relative_error": error, "problem": problem,
                         "seconds": time.perf_counter() - start})
            print(f"  {model.name:<16} passes {passes:<4} " + (problem or f"relative error {error:.2e}"), flush=True)
            if problem:
                failed.append(f"{model.name} ({passes}): {problem}")
    Path(result_file).write_text(json.dumps({"tolerance": FORWARD_TOLERANCE, "rows": rows}, indent=2) + "\n")
    verdict = "PASS" if not failed else "FAIL"
    worst = max((r["relative_error"] for r in rows if r["relative_error"] is not None), default=float("nan"))
    print(f"{verdict} zoo forward cuda vs cpu: {len(rows) - len(failed)}/{len(rows)} within {FORWARD_TOLERANCE:g} "
          f"(worst {worst:.2e})" + (f"; failed: {'; '.join(failed)}" if failed else ""))
    return not failed


def last_epoch(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    epochs = [r for r in records if r["kind"] == "epoch"]
    if not epochs:
        raise SystemExit(f"FAIL training: {run} finished no epoch")
    return epochs[-1]


def check_training(result_file: Path, cpu_run: Path, cuda_run: Path) -> bool:
    cpu, cuda = last_epoch(cpu_run), last_epoch(cuda_run)
    key = next(k for k in cpu if k.endswith("_accuracy") and k != "train_accuracy")
    gap = 100 * (cuda[key] - cpu[key])
    passed = cpu["epoch"] == cuda["epoch"] and abs(gap) <= ACCURACY_POINTS
    summary = {"epochs": cpu["epoch"], "measure": key, "cpu": cpu, "cuda": cuda, "gap_points": gap}
    Path(result_file).write_text(json.dumps(summary, indent=2) + "\n")
    speed = ""
    if cpu.get("images_per_s") and cuda.get("images_per_s"):
        speed = f"; training {cuda['images_per_s']:,.0f} img/s on cuda, {cpu['images_per_s']:,.0f} on the CPU"
    print(f"{'PASS' if passed else 'FAIL'} training after {cuda['epoch']} epoch(s): {key} cuda {100 * cuda[key]:.2f}% vs "
          f"cpu {100 * cpu[key]:.2f}% ({gap:+.2f} pp, allowed ±{ACCURACY_POINTS}){speed}")
    return passed


def micro_model(folder: Path) -> Path:
    path = folder / "micro.cnn"
    path.write_text(MICRO)
    return path


def tiny_data(folder: Path) -> None:
    """Two classes of 6x6 images (a bright top or bottom half) in MNIST's IDX layout, and the model."""
    import numpy as np

    from cnnlang.data import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("t10k", 4)):
        labels = rng.integers(0, 2, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 6, 6)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[3 * label:3 * label + 3] = 220
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    micro_model(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    zoo = commands.add_parser("zoo")
    zoo.add_argument("result", type=Path)
    zoo.add_argument("--tiny", action="store_true")
    zoo.add_argument("--models", nargs="+", metavar="NAME")
    training = commands.add_parser("training")
    training.add_argument("result", type=Path)
    training.add_argument("cpu_run", type=Path)
    training.add_argument("cuda_run", type=Path)
    data = commands.add_parser("tiny-data")
    data.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "zoo":
        return 0 if check_zoo(args.result, args.tiny, args.models) else 1
    if args.command == "training":
        return 0 if check_training(args.result, args.cpu_run, args.cuda_run) else 1
    tiny_data(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
