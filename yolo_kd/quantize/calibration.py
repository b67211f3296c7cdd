"""Calibration data for static INT8 quantization: images of the dataset's train split (never its val split),
letterboxed exactly as Ultralytics' predictor does, fed to onnxruntime (or NNCF) one image at a time; and the
MinMax fallback that keeps onnxruntime's histogram calibration from failing on a degenerate tensor."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core.errors import KDError
from ..data.datasets import load_dataset_yaml, split_images


def letterbox_tensor(image_bgr: np.ndarray, imgsz: int | tuple[int, int]) -> np.ndarray:
    """Ultralytics' predictor preprocessing of one BGR HWC uint8 image -> (1, 3, H, W) float32 RGB in [0, 1].

    Uses Ultralytics' own ``LetterBox`` (fixed-size ONNX input: ``auto=False``, grey 114 padding, centred).
    """
    from ultralytics.data.augment import LetterBox

    shape = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    img = LetterBox(shape, auto=False, stride=32)(image=image_bgr)
    img = img[..., ::-1].transpose(2, 0, 1)[None]  # BGR HWC -> RGB CHW, batch 1
    return np.ascontiguousarray(img, dtype=np.float32) / 255.0


def calibration_files(data: str | Path, n: int, split: str = "train", eval_split: str = "val") -> tuple[list[Path], list[str]]:
    """Pick ``n`` images, evenly spread and deterministic, from ``split``, never from ``eval_split``.

    Returns (files, warnings). Asking for more images than the split holds uses them all, with a warning.
    """
    if n < 1:
        raise KDError(f"--calib-images must be at least 1 (got {n}): pass e.g. --calib-images 256")
    dataset = load_dataset_yaml(data)
    files = split_images(dataset, split)
    notes = []
    if eval_split and eval_split != split and dataset.get(eval_split):
        held_out = {f.resolve() for f in split_images(dataset, eval_split)}
        kept = [f for f in files if f.resolve() not in held_out]
        if len(kept) < len(files):
            notes.append(f"{len(files) - len(kept)} '{split}' images are also in '{eval_split}': left out of calibration")
        files = kept
    if not files:
        raise KDError(f"no calibration images in the '{split}' split of '{data}': point '{split}:' at a folder of images")
    if n > len(files):
        notes.append(f"asked for {n} calibration images but the '{split}' split has {len(files)}: using all {len(files)}")
        n = len(files)
    idx = np.unique(np.linspace(0, len(files) - 1, n).round().astype(int))
    return [files[i] for i in idx], notes


def load_calibration(files: Sequence[Path], imgsz: int) -> tuple[list[Path], list[str]]:
    """Keep the files OpenCV can read; KDError if none can. Returns (readable files, warnings)."""
    ok, bad = [], []
    for f in files:
        (ok if cv2.imread(str(f)) is not None else bad).append(Path(f))
    if not ok:
        raise KDError(f"none of the {len(files)} calibration images could be read (e.g. '{files[0]}'): check the train split's image files")
    notes = [f"{len(bad)} unreadable calibration images skipped (e.g. '{bad[0]}')"] if bad else []
    return ok, notes


def make_reader(files: Sequence[Path], imgsz: int, input_name: str = "images"):
    """An onnxruntime ``CalibrationDataReader`` that letterboxes ``files`` lazily, one (1, 3, H, W) batch at a time.

    It supports ``set_range`` so calibration can run in strides (bounded memory for hundreds of 640 images).
    """
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.files, self.start, self.end = list(files), 0, len(files)
            self.rewind()

        def __len__(self):
            return len(self.files)

        def set_range(self, start_index: int, end_index: int):
            self.start, self.end = start_index, end_index
            self.rewind()

        def rewind(self):
            self.pos = self.start

        def get_next(self):
            while self.pos < self.end:
                img = cv2.imread(str(self.files[self.pos]))
                self.pos += 1
                if img is not None:
                    return {input_name: letterbox_tensor(img, imgsz)}
            return None

    return _Reader()


@contextlib.contextmanager
def minmax_fallback(method: str):
    """While open, onnxruntime's histogram calibration (percentile, entropy) survives degenerate tensors.

    A tensor whose values all but coincide (a constant activation of an untrained model, a saturated branch) has
    no histogram numpy can bin (``ValueError: Too many bins for data range``), which would end the whole export
    in a traceback. Such a tensor is calibrated with MinMax instead (its range: min/max over the calibration
    data, widened to include 0 as onnxruntime's MinMax does, symmetric when the calibrator is); every other tensor
    keeps ``method``. Yields a list that receives the names of the tensors that fell back.
    """
    import onnxruntime.quantization.calibrate as calibrate

    fallen: list[str] = []
    base = calibrate.HistogramCollector

    class Collector(base):
        def collect(self, name_to_arr):
            if not hasattr(self, "minmax"):
                self.minmax = {}
            for name, arr in name_to_arr.items():
                if name not in self.minmax:
                    try:
                        super().collect({name: arr})
                        continue
                    except ValueError:  # numpy cannot bin this tensor's range
                        old = self.histogram_dict.pop(name, None)
                        self.minmax[name] = (float(old[2]), float(old[3])) if old is not None else (np.inf, -np.inf)
                        fallen.append(name)
                data = np.asarray(arr, dtype=np.float32)
                data = data[np.isfinite(data)]
                if data.size:
                    lo, hi = self.minmax[name]
                    self.minmax[name] = (min(lo, float(data.min())), max(hi, float(data.max())))

        def compute_collection_result(self):
            result = super().compute_collection_result() if self.histogram_dict else {}
            for name, (lo, hi) in getattr(self, "minmax", {}).items():
                lo, hi = (min(lo, 0.0), max(hi, 0.0)) if lo <= hi else (0.0, 0.0)
                if self.symmetric:
                    lo, hi = -max(-lo, hi), max(-lo, hi)
                lo32, hi32 = np.array(lo, np.float32), np.array(hi, np.float32)
                result[name] = (lo32, hi32, np.zeros(1, np.int64), np.array([lo, hi], np.float32))
            return result

    if method == "minmax":  # MinMax builds no histogram
        yield fallen
        return
    calibrate.HistogramCollector = Collector
    try:
        yield fallen
    finally:
        calibrate.HistogramCollector = base
