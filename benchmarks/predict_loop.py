#!/usr/bin/env python3
"""The baseline for `catdog predict`: a loop calling `model.predict` on one image at a time.

This is how a notebook usually scores new photographs: load each file with
`keras.utils.load_img`, add a batch axis, call `model.predict`. The run's model is loaded
once, before the clock starts for the loop; the benchmark also times the whole process.

    python benchmarks/predict_loop.py RUN FOLDER --out loop.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchkit import image_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a catdog run folder")
    parser.add_argument("folder", type=Path, help="a flat folder of images")
    parser.add_argument("--out", type=Path, required=True, help="where to write the timings (JSON)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    from catdog.files import write_json
    from catdog.runs import Run

    run = Run.open(args.run)
    model = run.keras_model()
    paths = image_files(args.folder)
    size = (run.image_size, run.image_size)
    start = time.perf_counter()
    for path in paths:
        image = keras.utils.img_to_array(keras.utils.load_img(path, target_size=size, interpolation="bilinear"))
        model.predict(np.expand_dims(image, 0), verbose=0)
    loop_seconds = time.perf_counter() - start

    write_json(args.out, {"images": len(paths), "loop_seconds": loop_seconds,
                          "images_per_second": len(paths) / loop_seconds})
    print(f"predict_loop: {len(paths)} images in {loop_seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
