"""What is in a video file, and where AdaFocus looked: a trained run on any video (see adafocus/predict.py).

    python experiments/predict.py --run runs/synthetic video.mp4 [more.mp4 ...]
    python experiments/predict.py --run runs/synthetic --threshold 0.9 --window long.mp4
"""
from __future__ import annotations

import sys

from adafocus.predict import main

if __name__ == "__main__":
    sys.exit(main())
