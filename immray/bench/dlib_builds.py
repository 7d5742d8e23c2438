"""Compare dlib builds: HOG detection and ResNet descriptor time, each build in its own interpreter.

    python -m immray.bench.dlib_builds PHOTO_1024PX FACE_PHOTO --python .venv/bin/python --python /tmp/bin-venv/bin/python

Each interpreter must have dlib, numpy and Pillow; the models come from this venv's face_recognition_models.
Runs pinned to one core with OPENBLAS_NUM_THREADS=1 and prints medians, so builds compare per core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess

import face_recognition_models as models

PROBE = r"""
import json, sys, time, statistics, numpy as np, dlib
from PIL import Image
photo, face_photo, sp_path, rec_path = sys.argv[1:5]
def median_time(fn, n):
    fn(); times = []
    for _ in range(n):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return statistics.median(times)
img = np.asarray(Image.open(photo).convert("RGB"))
det = dlib.get_frontal_face_detector()
face_img = np.asarray(Image.open(face_photo).convert("RGB"))
box = max(det(face_img, 1), key=lambda r: r.area())
sp = dlib.shape_predictor(sp_path)
rec = dlib.face_recognition_model_v1(rec_path)
chip = dlib.get_face_chip(face_img, sp(face_img, box), 150, 0.25)
print(json.dumps({
    "blas": bool(dlib.DLIB_USE_BLAS), "avx": bool(dlib.USE_AVX_INSTRUCTIONS),
    "hog_up0_s": median_time(lambda: det(img, 0), 5),
    "hog_up1_s": median_time(lambda: det(img, 1), 5),
    "descriptor_ms": 1000 * median_time(lambda: rec.compute_face_descriptor([chip] * 8), 5) / 8,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photo", help="a ~1024 px photo for the detector")
    parser.add_argument("face_photo", help="a photo with one clear face for the descriptor")
    parser.add_argument("--python", action="append", required=True, help="an interpreter with a dlib build")
    parser.add_argument("--core", default="0", help="the core to pin to (taskset)")
    args = parser.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    sp = models.pose_predictor_five_point_model_location()
    rec = models.face_recognition_model_location()
    print(f"{'interpreter':<40} {'BLAS':>5} {'HOG up0 s':>10} {'HOG up1 s':>10} {'descr ms':>9}")
    for python in args.python:
        cmd = ["taskset", "-c", args.core, python, "-c", PROBE, args.photo, args.face_photo, sp, rec]
        out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        print(
            f"{python:<40} {out['blas']!s:>5} {out['hog_up0_s']:>10.3f} {out['hog_up1_s']:>10.3f}"
            f" {out['descriptor_ms']:>9.1f}"
        )


if __name__ == "__main__":
    main()
