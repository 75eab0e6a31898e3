"""Stage I: f_L and f_C trained on randomly placed patches with f_G frozen (50 epochs, lr 5e-4 / 0.05 in the paper).

Runs under `torchrun --nproc_per_node N` too (DistributedDataParallel; only rank 0 writes).
"""
from adafocus.cli import run_script, stage_main

if __name__ == "__main__":
    run_script(lambda argv: stage_main("stage1", __doc__, argv))
