"""PyTorch's DataLoader over opforge.Sampler (pairs made on the fly) against
`opforge datagen` writing the same pairs, in one run.

    PYTHONPATH=build/python python3 bench/python_sampler.py [BUILD] [RECIPE]
        (EPOCHS=5 passes over the recipe's pairs; WORKERS=2 loader workers)

PyTorch is a peer only (Debian's python3-torch)."""

import os
import subprocess
import sys
import tempfile
import time

import opforge
import torch.utils.data

EPOCHS = int(os.environ.get("EPOCHS", "5"))
WORKERS = int(os.environ.get("WORKERS", "2"))


def as_list(items):
    return items  # pairs differ in shape (crops, grey targets): no stacking


def one_thread_per_worker(_):
    # Each worker makes its pairs on one core: the workers are the parallelism.
    opforge.set_threads(1)


def loader_seconds(recipe, start_method):
    sampler = opforge.Sampler(recipe)
    loader = torch.utils.data.DataLoader(sampler, batch_size=4, num_workers=WORKERS, collate_fn=as_list,
                                         worker_init_fn=one_thread_per_worker, multiprocessing_context=start_method,
                                         persistent_workers=True)
    start = time.perf_counter()
    pairs = 0
    for _ in range(EPOCHS):
        for batch in loader:
            pairs += len(batch)
    return pairs, time.perf_counter() - start


def datagen_seconds(build, recipe):
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            subprocess.run([f"{build}/cli/opforge", "datagen", recipe, "--out", f"{d}/out", "-q", "--threads", "2"],
                           check=True, stdout=subprocess.DEVNULL)
            best = min(best, time.perf_counter() - start)
    return best


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    recipe = sys.argv[2] if len(sys.argv) > 2 else "manifests/demo.yaml"
    pairs_per_epoch = len(opforge.Sampler(recipe))
    datagen = datagen_seconds(build, recipe)
    print(f"recipe {recipe}: {pairs_per_epoch} pairs per pass; torch {torch.__version__}, {os.cpu_count()} cores")
    print(f"opforge datagen (2 threads, files written): {pairs_per_epoch / datagen:.1f} pairs/s ({datagen:.2f} s, best of 3)")
    for method in ("fork", "spawn"):
        pairs, seconds = loader_seconds(recipe, method)
        print(f"DataLoader over opforge.Sampler ({WORKERS} workers, {method}, {EPOCHS} passes, worker start-up "
              f"included): {pairs / seconds:.1f} pairs/s ({pairs} pairs in {seconds:.2f} s; "
              f"{pairs / seconds / (pairs_per_epoch / datagen):.2f}x datagen)")


if __name__ == "__main__":
    main()
