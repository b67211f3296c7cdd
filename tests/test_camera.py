"""Camera tool: annotated video, JSON lines, image folders, no-display fallback, clean stops and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_runtime import NAMES, build_models
from yolo_kd.commands.camera import main
from yolo_kd.core.errors import KDError
from yolo_kd.data.synthetic import ShapesSpec, render_image
from yolo_kd.deploy.video import Frame, FrameSource, draw_detections

TOOL = Path(__file__).resolve().parents[1] / "tools" / "camera.py"
W, H, N_FRAMES = 192, 144, 8


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_models(tmp_path_factory.getbasetemp() / "yolo_kd_runtime_models")["fixed"]


def _frames() -> list[np.ndarray]:
    return [cv2.resize(render_image(ShapesSpec(imgsz=160), "val", i)[0], (W, H)) for i in range(N_FRAMES)]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """An 8-frame 192x144 MJPG clip of shapes (MJPG: every frame decodes independently and near-losslessly)."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for frame in _frames():
        writer.write(frame)
    writer.release()
    return path


def _read_video(path: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_video_to_annotated_video_and_json_lines(model, video, tmp_path, capsys):
    from yolo_kd.deploy.runtime import Detector

    out = tmp_path / "out.mp4"
    assert main(["--model", str(model), "--source", str(video), "--save", str(out), "--headless", "--conf", "0.1"]) == 0
    captured = capsys.readouterr()
    records = _json_lines(captured.out)  # stdout holds nothing but the JSON lines
    assert [r["frame"] for r in records] == list(range(N_FRAMES))
    for r in records:
        assert set(r["ms"]) == {"pre", "infer", "post", "total"} and r["ms"]["total"] > 0 and r["size"] == [W, H]
        for d in r["detections"]:
            assert d["name"] == NAMES[d["cls"]] and 0.1 < d["score"] <= 1
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H
    assert sum(len(r["detections"]) for r in records) > 0
    assert "end of video" in captured.err and f"saved {N_FRAMES} annotated frames" in captured.err

    source = _read_video(video)  # the JSON equals the runtime's answer on the decoded frame
    expected = Detector(model, conf=0.1)(source[0]).to_list(NAMES)
    assert records[0]["detections"] == expected

    written = _read_video(out)
    assert len(written) == N_FRAMES and written[0].shape == (H, W, 3)
    for src, ann, rec in zip(source, written, records):
        band = np.abs(src[:12, :60].astype(int) - ann[:12, :60]).mean()  # FPS overlay band in the top-left corner
        assert band > 20
        if rec["detections"]:  # below the band, the frame is the source with exactly these boxes drawn
            dets = rec["detections"]
            drawn = draw_detections(src.copy(), np.array([d["box"] for d in dets]), np.array([d["score"] for d in dets]),
                                    np.array([d["cls"] for d in dets]), NAMES)
            to_drawn, to_src = (np.abs(ann[20:].astype(int) - x[20:]).mean() for x in (drawn, src))
            assert to_drawn < 0.5 * to_src
    assert not list(tmp_path.glob(".out.mp4*"))  # no temporary left behind


def test_image_folder_skips_unreadable_files(model, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames()[:2]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    (folder / "000b.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    assert main(["--model", str(model), "--source", str(folder), "--headless"]) == 0
    captured = capsys.readouterr()
    records = _json_lines(captured.out)
    assert [(r["frame"], r["source"]) for r in records] == [(0, "000.png"), (2, "001.png")]
    assert "skipping '000b.png': not a readable image" in captured.err


def test_no_display_falls_back_to_headless(model, video, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["--model", str(model), "--source", str(video), "--max-frames", "2"]) == 0
    captured = capsys.readouterr()
    assert "running headless" in captured.err
    assert len(_json_lines(captured.out)) == 2


class _InterruptedSource(FrameSource):
    """Two frames, then Ctrl-C."""

    kind, label, fps = "camera", "0", 15.0

    def __iter__(self):
        for i, frame in enumerate(_frames()[:2]):
            yield Frame(i, frame, "0")
        raise KeyboardInterrupt


def test_ctrl_c_stops_cleanly_and_keeps_the_video(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("yolo_kd.commands.camera.open_source", lambda source: _InterruptedSource())
    out = tmp_path / "cam.avi"
    assert main(["--model", str(model), "--source", "0", "--headless", "--save", str(out)]) == 0
    captured = capsys.readouterr()
    assert "interrupted: stopping" in captured.err and len(_json_lines(captured.out)) == 2
    assert len(_read_video(out)) == 2


def test_bad_input_gives_one_line(model, video, tmp_path):
    def fails(*argv: str) -> str:
        base = {"--model": str(model), "--source": str(video)}
        base = [t for k, v in base.items() if k not in argv for t in (k, v)]  # the test's own value replaces the default
        with pytest.raises(KDError) as e:
            main([*base, "--headless", *argv])
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "not found" in fails("--source", str(tmp_path / "missing.mp4"))
    assert "no images" in fails("--source", str(tmp_path))
    assert "fixed input 128x128" in fails("--imgsz", "320")
    assert ".mp4, .avi, .mkv" in fails("--save", str(tmp_path / "out.gif"))
    assert not (tmp_path / "out.gif").exists()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage" * 50)
    assert "cannot load" in fails("--model", str(broken))
    assert "cannot open stream" in fails("--source", "http://127.0.0.1:9/stream.mjpg")  # connection refused
    not_video = tmp_path / "clip.mp4"
    not_video.write_text("not a video")
    assert "cannot read video" in fails("--source", str(not_video))
    assert "both set --model" in fails(f"model={broken}")  # key=value is the same option as --model: one value


def test_script_reports_missing_camera_in_one_line(model):
    """The real script, as a user runs it: exit code 2 and exactly one stderr line, no traceback."""
    proc = subprocess.run([sys.executable, str(TOOL), "--model", str(model), "--source", "7"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "yolo_kd: error: cannot open camera 7: check the index (0 is the first camera), that it is connected "
        "and that no other program is using it"]


class _FakeCapture:
    """cv2.VideoCapture stand-in that replays ``reads``: an image (a decoded frame) or None (a failed read)."""

    def __init__(self, reads: list):
        self.reads, self.released = list(reads), False

    def read(self):
        item = self.reads.pop(0) if self.reads else None
        return item is not None, item

    def release(self):
        self.released = True


def _capture(kind: str, reads: list, frame_count: int | None = None) -> tuple:
    from yolo_kd.deploy.video import CaptureSource

    messages: list[str] = []
    source = object.__new__(CaptureSource)  # skip opening a device: feed scripted reads instead
    source.kind, source.label, source.log, source.fps, source.frame_count = kind, "src", messages.append, None, frame_count
    source.cap = _FakeCapture(reads)
    return source, messages


def test_camera_that_disappears_ends_cleanly():
    img = np.zeros((4, 4, 3), np.uint8)
    source, messages = _capture("camera", [img, img, img])
    assert [f.index for f in source] == [0, 1, 2]
    assert messages == ["camera src stopped delivering frames (disconnected or in use?): stopping after 3 frames"]
    assert source.cap.released


def test_undecodable_video_frame_is_skipped():
    img = np.zeros((4, 4, 3), np.uint8)
    source, messages = _capture("video", [img, None, img, img], frame_count=4)
    assert [f.index for f in source] == [0, 2, 3]
    assert messages == ["frame 1 of 'src' could not be decoded: skipping it", "end of video 'src' after 3 frames"]
