"""The package layout: one-way imports (the edge runtime never pulls torch), old module paths, shared helpers."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import yolo_kd


def test_deploy_runtime_imports_no_torch():
    code = "import sys, yolo_kd.deploy.runtime, yolo_kd.deploy.video, yolo_kd.deploy.latency; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("old", sorted(k for k, v in yolo_kd._OLD_MODULES.items() if not v.startswith("yolo_kd.distill")))
def test_old_module_paths_import_with_a_warning(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module.__name__ == yolo_kd._OLD_MODULES[old]
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in seen)


def test_old_quantize_names_resolve_with_a_warning():
    from yolo_kd.quantize import ptq

    with pytest.warns(DeprecationWarning, match="yolo_kd.quantize.export_int8"):
        from yolo_kd.quantize import export_int8
    assert export_int8 is ptq.export_int8
    with pytest.raises(ImportError):
        from yolo_kd.quantize import no_such_name  # noqa: F401


def test_image_formats_are_ultralytics():
    from ultralytics.data.utils import IMG_FORMATS

    from yolo_kd.core.images import IMG_FORMATS as ours

    assert ours == set(IMG_FORMATS)


def test_list_images(tmp_path):
    from yolo_kd.core.images import list_images

    (tmp_path / "sub").mkdir()
    for name in ("b.JPG", "a.png", "notes.txt", "sub/c.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("a.png\n./sub/c.webp\n\n")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.png", "b.JPG"]
    assert list_images(tmp_path / "list.txt") == [tmp_path / "a.png", tmp_path / "sub" / "c.webp"]
    assert list_images(tmp_path / "a.png") == [tmp_path / "a.png"] and list_images(tmp_path / "missing") == []


def test_markdown_table():
    from yolo_kd.core.tables import markdown_table

    assert markdown_table(["a", "b", "c"], [[1, None, "x"], ["only"]], align="lr") == (
        "| a | b | c |\n|---|--:|---|\n| 1 |  | x |\n| only |  |  |"
    )
