"""Warm-up (stage 0): f_G and f_L fine-tuned on whole frames, each with its own linear head (15 epochs, lr 0.01 in the paper).

Runs under `torchrun --nproc_per_node N` too (DistributedDataParallel; only rank 0 writes).
"""
from adafocus.cli import run_script, stage_main

if __name__ == "__main__":
    run_script(lambda argv: stage_main("warmup", __doc__, argv))
