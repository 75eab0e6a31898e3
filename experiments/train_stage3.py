"""Stage III: f_C fine-tuned under the learned policy pi (10 epochs, lr 5e-3 ActivityNet/FCVID, 5e-4 Mini-Kinetics).

Runs under `torchrun --nproc_per_node N` too (DistributedDataParallel; only rank 0 writes).
"""
from adafocus.cli import run_script, stage_main

if __name__ == "__main__":
    run_script(lambda argv: stage_main("stage3", __doc__, argv))
