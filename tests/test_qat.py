"""QAT (issue 16): fake quantization placed for onnxruntime's INT8 kernels (or, ``placement="nncf"``, where OpenVINO
fuses it), fine-tuned through the distillation trainer (with and without teacher), exported to a QDQ ONNX that
computes what the fake-quantized model computes."""

from __future__ import annotations

import copy
import csv
import importlib.util
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
import yaml
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel

from yolo_kd.commands import qat as qat_cmd
from yolo_kd.core.errors import KDError, run_cli
from yolo_kd.quantize.calibration import letterbox_tensor
from yolo_kd.quantize.fake_quant import FakeQuantOutput, QATConv2d, decode_convs, decode_inputs, is_qat, quantizers
from yolo_kd.quantize.qat import freeze, prepare_qat, run_qat

QAT_ARGS = dict(epochs=1, imgsz=64, batch=16, device="cpu", calib_images=4, backend="onnxruntime", workers=0,
                fraction=0.25, seed=0, verbose=False)


def _one_line(capsys, argv) -> str:
    assert run_cli(qat_cmd.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yolo_kd: error: "), err
    return err[0]


def _val_images(data: str, n: int = 4) -> list[np.ndarray]:
    root = Path(data).parent / "images" / "val"
    return [letterbox_tensor(cv2.imread(str(f)), 64) for f in sorted(root.iterdir())[:n]]


@pytest.fixture(scope="module")
def qat_run(teacher_pt, tiny_data, tmp_path_factory):
    """QAT of the trained tiny model with itself as teacher, exported (no latency/mAP report)."""
    out = tmp_path_factory.mktemp("qat") / "kd"
    return run_qat(teacher_pt, tiny_data, teacher=teacher_pt, save_dir=out, report=False, ptq=False, **QAT_ARGS)


def test_prepare_keeps_the_decode_float_and_calibrates_ranges():
    torch.manual_seed(0)
    m = DetectionModel("yolo11n.yaml", nc=4, verbose=False)
    q = prepare_qat(m, [torch.rand(1, 3, 64, 64) for _ in range(2)])
    convs = [x for x in q.modules() if isinstance(x, torch.nn.Conv2d)]
    quantized = [x for x in convs if isinstance(x, QATConv2d)]
    assert len(decode_convs(q)) == 7 and len(quantized) == len(convs) - 7  # 6 head output convs + DFL stay float
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in q.modules())  # folded, as exported
    assert all(float(c.input_fq.scale) != 1.0 and not c.input_fq.observer_enabled for c in quantized)
    assert all(c.weight_fq.observer_enabled and c.weight_fq.scale.numel() == c.out_channels for c in quantized)
    assert not is_qat(m) and is_qat(q)  # the original is left alone
    with pytest.raises(KDError, match="fake-quantized already"):
        prepare_qat(q, [])


def test_the_nncf_placement_quantizes_where_tensors_are_written():
    """placement=nncf: the image and every weight, then each activation's output (not a convolution's input or
    pre-activation) and each residual block's sum; the blocks only the decode reads stay unquantized."""
    from ultralytics.nn.modules import Conv
    from ultralytics.nn.modules.block import Bottleneck, PSABlock

    torch.manual_seed(0)
    q = prepare_qat(DetectionModel("yolo11n.yaml", nc=4, verbose=False), [torch.rand(1, 3, 64, 64) for _ in range(2)],
                    placement="nncf")
    convs = [x for x in q.modules() if isinstance(x, QATConv2d)]
    assert len(convs) == 81 and convs[0] is q.model[0].conv and convs[0].input_fq is not None
    assert all(c.input_fq is None and c.output_fq is None and c.weight_fq is not None for c in convs[1:])
    blocks, quiet = [x for x in q.modules() if isinstance(x, Conv)], decode_inputs(q)
    assert len(quiet) == 6  # the last block of each box and class branch, read only by its float output conv
    assert all(isinstance(b.act, FakeQuantOutput) == (id(b) not in quiet) for b in blocks)
    residual = {id(x.module) for x in q.modules() if isinstance(x, FakeQuantOutput) and isinstance(x.module, (Bottleneck, PSABlock))}
    assert residual and residual == {id(x) for x in q.modules() if isinstance(x, (Bottleneck, PSABlock)) and x.add}
    acts = [f for _, f in quantizers(q) if f.qscheme != torch.per_channel_symmetric]
    assert len(acts) == 1 + len(blocks) - len(quiet) + len(residual)
    assert all(float(f.scale) != 1.0 and not f.observer_enabled for f in acts)  # calibrated, then held


def test_gradients_reach_the_fake_quantized_student_not_the_teacher():
    from yolo_kd.distill.config import load_kd_config
    from yolo_kd.distill.model import KDModel

    torch.manual_seed(0)
    student, teacher = DetectionModel("yolo11n.yaml", nc=4, verbose=False), DetectionModel("yolo11s.yaml", nc=4, verbose=False)
    q = prepare_qat(student, [torch.rand(1, 3, 64, 64)])
    q.args = get_cfg(overrides={"imgsz": 64})
    kd = KDModel(q, teacher, load_kd_config()).train()
    batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[1.0], [2.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.6, 0.2, 0.4]])}
    loss, items = kd(batch)
    assert set(items) >= {"kd_cls", "kd_box", "kd_feat"} and all(torch.isfinite(v) for v in items.values())
    loss.sum().backward()
    first = q.model[0].conv
    assert isinstance(first, QATConv2d) and first.weight.grad.abs().sum() > 0  # straight-through the fake quant
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def _fake_quant_and_float(qat_run):
    """The trained fake-quantized model (observers frozen) and a copy with its fake quantization off."""
    ckpt = torch.load(str(qat_run.best), weights_only=False)
    fq = freeze((ckpt.get("ema") or ckpt["model"]).float().eval())
    fp = copy.deepcopy(fq)
    for _, f in quantizers(fp):
        f.disable_fake_quant()
    return fq, fp


def test_qat_with_teacher_exports_int8_onnx_that_matches_the_fake_quant_model(qat_run, tiny_data):
    from yolo_kd.quantize.onnx_graph import float_node_groups, kernel_share

    run_dir = qat_run.save_dir / "train"
    header = next(csv.reader(open(run_dir / "results.csv")))
    assert any(h.strip() == "train/kd_cls" for h in header)  # the teacher distilled during QAT
    share = kernel_share(qat_run.int8_convs_onnx)
    assert share.n_conv == 88 and share.n_int8 == 81  # onnxruntime runs every conv outside the decode in INT8
    model = onnx.load(str(qat_run.int8_convs_onnx))
    kinds = {c.name: c.kind for c in share.convs}
    assert all(kinds[n] == "float" for n in float_node_groups(model)["head"])  # decode float, as PTQ keeps it
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = [producer[c.input[1]] for c in model.graph.node if c.op_type == "Conv" and c.input[1] in producer]
    assert len(weights) == 81 and all(d.op_type == "DequantizeLinear" and inits[d.input[0]].data_type == onnx.TensorProto.INT8
                                      for d in weights)  # weights stored as INT8, as onnxruntime's PTQ stores them
    assert {p.key for p in model.metadata_props} >= {"names", "stride", "imgsz"}

    import onnxruntime as ort

    fq, fp = _fake_quant_and_float(qat_run)
    session = ort.InferenceSession(str(qat_run.int8_convs_onnx), providers=["CPUExecutionProvider"])
    for x in _val_images(tiny_data):
        want = fq(torch.from_numpy(x))[0].detach().numpy()
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        float_out = fp(torch.from_numpy(x))[0].detach().numpy()
        err = np.abs(got - want)
        # boxes (pixels) within a hundredth of a pixel at the median, scores the same; far closer than float is
        assert np.median(err) < 1e-3 and err.max() < 0.05 * max(1.0, np.abs(want).max()), err.max()
        assert np.abs(float_out - want).max() > 10 * np.median(err)


def _quantized_outputs(model: onnx.ModelProto, op: str) -> int:
    """How many ``op`` nodes of ``model`` feed a QuantizeLinear (run between INT8 tensors in onnxruntime)."""
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return sum(1 for n in model.graph.node if n.op_type == op and n.output[0] in quantized)


def _conv_qparams(model: onnx.ModelProto) -> dict[str, tuple]:
    """Per quantized Conv (by node name): its weight integers and scales, its input scale and zero point."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for c in (n for n in model.graph.node if n.op_type == "Conv"):
        x, w = (producer.get(i) for i in c.input[:2])
        if w is not None and w.op_type == "DequantizeLinear":
            out[c.name] = tuple(inits[i].reshape(-1) for i in (w.input[0], w.input[1], x.input[1], x.input[2]))
    return out


def test_the_onnxruntime_file_quantizes_every_op_and_keeps_qats_scales(qat_run, tiny_data):
    """qat_int8.onnx: SiLU, Add, Concat, MaxPool and Resize run between INT8 tensors as in the PTQ file, while every
    convolution keeps the integers and scales QAT trained; its outputs stay close to the fake-quantized model's."""
    import onnxruntime as ort

    from yolo_kd.quantize.onnx_graph import kernel_share

    convs, full = onnx.load(str(qat_run.int8_convs_onnx)), onnx.load(str(qat_run.int8_onnx))
    assert kernel_share(qat_run.int8_onnx).n_int8 == 81
    assert _quantized_outputs(convs, "Sigmoid") == 0 and _quantized_outputs(full, "Sigmoid") >= 70
    assert _quantized_outputs(full, "Mul") > _quantized_outputs(convs, "Mul") + 30
    assert _quantized_outputs(full, "MaxPool") == 3 > _quantized_outputs(convs, "MaxPool")
    before, after = _conv_qparams(convs), _conv_qparams(full)
    assert len(before) == 81 and after.keys() == before.keys()
    producer = {o: n for n in convs.graph.node for o in n.output}
    moved = {"Split", "Reshape"}  # onnxruntime gives a data-movement op's output the scale of its input
    for name, (w, w_scale, x_scale, x_zp) in before.items():
        w2, w_scale2, x_scale2, x_zp2 = after[name]
        assert np.array_equal(w, w2) and np.array_equal(w_scale, w_scale2), name  # QAT's integers, exactly
        conv = next(n for n in convs.graph.node if n.name == name)
        source = producer.get(producer[producer[conv.input[0]].input[0]].input[0])  # DQ <- Q <- source
        source = "graph input" if source is None else source.op_type
        same = np.array_equal(x_scale, x_scale2) and np.array_equal(x_zp, x_zp2)
        assert same or source in moved, (name, source)  # QAT's input scale
    done = qat_run.completion
    assert done.weights == 81 and done.activations >= 81 and not done.missing and done.merged == 0

    fq, fp = _fake_quant_and_float(qat_run)
    session = ort.InferenceSession(str(qat_run.int8_onnx), providers=["CPUExecutionProvider"])
    for x in _val_images(tiny_data):
        want = fq(torch.from_numpy(x))[0].detach().numpy()
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        float_err = np.abs(fp(torch.from_numpy(x))[0].detach().numpy() - want)
        err = np.abs(got - want)
        # the extra rounding of Sigmoid/Add/Concat moves boxes (pixels) and scores less than float arithmetic does
        assert np.median(err) < np.median(float_err) and err.max() < 0.1 * max(1.0, np.abs(want).max()), err.max()


def test_strip_qdq_records_the_quantization_and_snaps_weights_to_their_integers():
    """A hand-made QDQ graph: input -> Q/DQ -> Conv(Q/DQ per-channel weight) -> Q/DQ -> Q/DQ (twice) -> Relu."""
    from onnx import TensorProto, helper, numpy_helper

    from yolo_kd.quantize.qat_graph import strip_qdq

    w = np.array([[[[0.26]], [[-0.5]]], [[[1.0]], [[0.049]]]], np.float32)  # (2 out, 2 in, 1, 1)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w, "W"), (np.array([0.1, 0.02], np.float32), "ws"), (np.zeros(2, np.int8), "wz"),
        (np.array(0.05, np.float32), "xs"), (np.array(128, np.uint8), "xz"),
        (np.array(0.2, np.float32), "ys"), (np.array(10, np.uint8), "yz"),
        (np.array(0.3, np.float32), "y2s"), (np.array(0, np.uint8), "y2z")]]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("QuantizeLinear", ["W", "ws", "wz"], ["Wq"], axis=0),
        helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"], axis=0),
        helper.make_node("Conv", ["xd", "Wd"], ["y"], name="conv"),
        helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]), helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["yd"]),
        helper.make_node("QuantizeLinear", ["yd", "y2s", "y2z"], ["yq2"]),
        helper.make_node("DequantizeLinear", ["yq2", "y2s", "y2z"], ["yd2"]),
        helper.make_node("Relu", ["yd2"], ["out"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    model, overrides, merged = strip_qdq(helper.make_model(graph))
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    assert list(model.graph.node[0].input) == ["x", "W"] and list(model.graph.node[1].input) == ["y"]
    snapped = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "W"))
    np.testing.assert_allclose(snapped.reshape(2, 2), [[0.3, -0.5], [1.0, 0.04]], atol=1e-7)  # round(w / scale) * scale
    assert overrides["W"][0]["axis"] == 0 and [float(o["scale"]) for o in overrides["W"]] == pytest.approx([0.1, 0.02])
    assert float(overrides["x"][0]["scale"]) == pytest.approx(0.05) and int(overrides["x"][0]["zero_point"]) == 128
    assert merged == 1 and float(overrides["y"][0]["scale"]) == pytest.approx(0.3)  # the wider of 0.2 and 0.3 kept
    assert {i.name for i in model.graph.initializer} == {"W"}  # the quantization parameters are gone


def test_the_saturating_copy_clips_each_qat_tensor_to_its_range():
    from onnx import TensorProto, helper, numpy_helper

    from yolo_kd.quantize.qat_graph import saturating_copy

    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"), helper.make_node("Neg", ["y"], ["out"], name="neg")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])])
    over = {"y": [{"scale": np.asarray(0.01, np.float32), "zero_point": np.asarray(55, np.uint8)}]}
    m = saturating_copy(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), over)
    assert [n.op_type for n in m.graph.node] == ["Relu", "Clip", "Neg"]  # in topological order
    inits = {i.name: float(numpy_helper.to_array(i)) for i in m.graph.initializer}
    clip = m.graph.node[1]
    assert inits[clip.input[1]] == pytest.approx(-0.55) and inits[clip.input[2]] == pytest.approx(2.0)  # (0|255 - 55) x 0.01
    import onnxruntime as ort

    out = ort.InferenceSession(m.SerializeToString()).run(None, {"x": np.array([-1, 0.5, 3, 9], np.float32)})[0]
    np.testing.assert_allclose(out, [0, -0.5, -2.0, -2.0], atol=1e-6)


def test_clip_conv_outputs_keeps_the_saturation_of_each_pre_activation_quantizer():
    """Conv -> Q/DQ -> SiLU becomes Conv -> Clip -> SiLU (the pair's range, the DQ's output name, in the Q's place);
    a Q/DQ on a convolution's output that another convolution reads stays."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from yolo_kd.quantize.qat_graph import clip_conv_outputs

    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array([[[[2.0]]]], np.float32), "W1"), (np.array([[[[1.0]]]], np.float32), "W2"),
        (np.array(0.01, np.float32), "s"), (np.array(100, np.uint8), "z")]]
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"], name="conv1"),
             helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"], name="q1"),
             helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"]),
             helper.make_node("Sigmoid", ["ad"], ["sig"]), helper.make_node("Mul", ["ad", "sig"], ["act"]),
             helper.make_node("Conv", ["act", "W2"], ["b"], name="conv2"),
             helper.make_node("QuantizeLinear", ["b", "s", "z"], ["bq"]),
             helper.make_node("DequantizeLinear", ["bq", "s", "z"], ["bd"]),
             helper.make_node("Conv", ["bd", "W2"], ["out"], name="conv3")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 1, 4])], inits)
    model, n = clip_conv_outputs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert n == 1
    assert [x.op_type for x in model.graph.node] == ["Conv", "Clip", "Sigmoid", "Mul", "Conv", "QuantizeLinear",
                                                     "DequantizeLinear", "Conv"]
    clip = model.graph.node[1]
    assert list(clip.input[:1]) == ["a"] and list(clip.output) == ["ad"]
    bounds = {i.name: float(numpy_helper.to_array(i).reshape(-1)[0]) for i in model.graph.initializer}
    assert bounds[clip.input[1]] == pytest.approx(-1.0) and bounds[clip.input[2]] == pytest.approx(1.55)  # (0|255 - 100) x 0.01
    x = np.array([-3.0, -0.2, 0.3, 5.0], np.float32).reshape(1, 1, 1, 4)
    out = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0].reshape(-1)
    a = np.clip(2 * x.reshape(-1), -1.0, 1.55)  # saturated like the quantizer, not rounded
    b = np.clip(np.round(a / (1 + np.exp(-a)) / 0.01) + 100, 0, 255) * 0.01 - 1.0  # the second pair still rounds
    np.testing.assert_allclose(out, b, atol=1e-6)


def test_the_openvino_file_clips_instead_of_quantizing_before_each_silu(qat_run, tiny_data):
    """The QAT IR's source: every convolution that has a SiLU loses its pre-activation Q/DQ pair (OpenVINO quantizes
    after the fused activation, where the next op reads), keeps its input and weight quantization, and computes what
    the convolutions-only file computes up to that rounding."""
    import onnxruntime as ort

    from yolo_kd.quantize.onnx_graph import kernel_share
    from yolo_kd.quantize.qat_graph import clip_conv_outputs

    convs = onnx.load(str(qat_run.int8_convs_onnx))
    silu_convs = sum(1 for n in convs.graph.node if n.op_type == "Sigmoid")
    clipped, n = clip_conv_outputs(copy.deepcopy(convs))
    assert n >= 70 and n == sum(1 for x in clipped.graph.node if x.op_type == "Clip")
    assert n <= silu_convs and _quantized_outputs(clipped, "Conv") == _quantized_outputs(convs, "Conv") - n
    assert _conv_qparams(clipped).keys() == _conv_qparams(convs).keys()  # inputs and weights still INT8
    path = qat_run.save_dir / "clipped_for_test.onnx"
    onnx.save(clipped, str(path))
    assert kernel_share(path).n_conv == 88
    want_session = ort.InferenceSession(str(qat_run.int8_convs_onnx), providers=["CPUExecutionProvider"])
    got_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fq, fp = _fake_quant_and_float(qat_run)
    for x in _val_images(tiny_data):
        want = want_session.run(None, {want_session.get_inputs()[0].name: x})[0]
        got = got_session.run(None, {got_session.get_inputs()[0].name: x})[0]
        float_err = np.abs(fp(torch.from_numpy(x))[0].detach().numpy() - want)
        err = np.abs(got - want)
        # dropping the rounding moves the boxes (pixels) far less than dropping the quantization and its saturation
        # does, and by a hundredth of a pixel at most
        assert err[:, :4].mean() < 0.5 * float_err[:, :4].mean() and err.max() < 0.01, (err.max(), float_err.max())


def test_the_qat_ir_has_no_fake_quantize_before_a_silu_and_runs_what_the_clipped_file_computes(qat_run, tiny_data,
                                                                                                  tmp_path):
    """tools/qat.py's OpenVINO IR: OpenVINO gets the clipped file, quantizes each convolution's input and weight (INT8
    kernels) and nothing between a convolution and its SiLU; its outputs are the clipped ONNX file's."""
    pytest.importorskip("openvino")
    import onnxruntime as ort

    from yolo_kd.quantize.openvino_graph import runtime_share
    from yolo_kd.quantize.openvino_ir import compile_for_cpu, ir_xml
    from yolo_kd.quantize.qat import export_qat_openvino
    from yolo_kd.quantize.qat_graph import clip_conv_outputs

    folder = export_qat_openvino(qat_run.int8_convs_onnx, tmp_path / "qat_int8_openvino_model")
    compiled, model = compile_for_cpu(folder, threads=1)
    fq_read_by = [t.get_node().get_type_name() for o in model.get_ops() if o.get_type_name() == "FakeQuantize"
                  for t in o.output(0).get_target_inputs()]
    assert "Swish" not in fq_read_by and "Sigmoid" not in fq_read_by and fq_read_by.count("Convolution") >= 70
    assert runtime_share(folder).n_int8 >= 0.9 * 81
    assert (Path(ir_xml(folder)).parent / "metadata.yaml").is_file()
    clipped, _ = clip_conv_outputs(onnx.load(str(qat_run.int8_convs_onnx)))
    session = ort.InferenceSession(clipped.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in _val_images(tiny_data, 2):
        want = session.run(None, {session.get_inputs()[0].name: x})[0]
        got = compiled(x)[compiled.output(0)]
        assert np.abs(got - want)[:, :4].max() < 0.05, np.abs(got - want).max()  # boxes within 0.05 px


def _fake_quantize_sites(folder: Path) -> tuple[Counter, Counter]:
    """(op types that write a FakeQuantize's input, op types that read its output) of an IR."""
    import openvino as ov

    from yolo_kd.quantize.openvino_ir import ir_xml

    fqs = [o for o in ov.Core().read_model(str(ir_xml(folder))).get_ops() if o.get_type_name() == "FakeQuantize"]
    return (Counter(o.input(0).get_source_output().get_node().get_type_name() for o in fqs),
            Counter(t.get_node().get_type_name() for o in fqs for t in o.output(0).get_target_inputs()))


def test_the_openvino_ir_is_the_trained_network_in_nncfs_placement(qat_run, teacher_pt, tiny_data, tmp_path):
    """tools/qat.py's OpenVINO file: NNCF places the quantizers exactly where it places them for the FP32 parent (none
    on a Concat or Split output, which OpenVINO could not fuse into a convolution), INT8 kernels run, and it computes
    what the trained network computes: closer to the clipped QAT file than the same network without fake quantization."""
    pytest.importorskip("nncf")
    import onnxruntime as ort

    from yolo_kd.core.checkpoints import export_copy
    from yolo_kd.quantize.openvino_graph import runtime_share
    from yolo_kd.quantize.openvino_ir import compile_for_cpu, quantize_ir
    from yolo_kd.quantize.qat import calibration_images, export_and_report
    from yolo_kd.quantize.qat_graph import clip_conv_outputs
    from ultralytics import YOLO

    res = export_and_report(qat_run.best, Path(teacher_pt), tiny_data, 64, 4, ("onnxruntime", "openvino"),
                            tmp_path / "run", report=False, ptq=False)
    folder, qat_placed = res.openvino_int8, res.openvino_int8_convs
    assert (folder.name, qat_placed.name) == ("qat_int8_openvino_model", "qat_int8_convs_openvino_model")
    assert YOLO(str(folder), task="detect").names == YOLO(str(teacher_pt)).names  # Ultralytics' metadata kept
    parent = export_copy(teacher_pt, tmp_path / "parent.onnx", format="onnx", imgsz=64, simplify=True, dynamic=False,
                         batch=1)
    quantize_ir(parent, tmp_path / "parent_int8_openvino_model", calibration_images(tiny_data, 4, 64), 64)
    written, read = _fake_quantize_sites(folder)
    assert (written, read) == _fake_quantize_sites(tmp_path / "parent_int8_openvino_model")
    assert written["Concat"] == written["VariadicSplit"] == 0 and written["Swish"] >= 70
    qat_written, _ = _fake_quantize_sites(qat_placed)
    assert qat_written["Concat"] + qat_written["VariadicSplit"] >= 10  # where QAT's own file quantizes instead
    assert runtime_share(folder).n_int8 >= 0.9 * 81
    compiled, _ = compile_for_cpu(folder, threads=1)
    clipped, _ = clip_conv_outputs(onnx.load(str(qat_run.int8_convs_onnx)))
    session = ort.InferenceSession(clipped.SerializeToString(), providers=["CPUExecutionProvider"])
    _, fp = _fake_quant_and_float(qat_run)
    for x in _val_images(tiny_data, 2):
        want = session.run(None, {session.get_inputs()[0].name: x})[0]
        got = compiled(x)[compiled.output(0)]
        float_err = np.abs(fp(torch.from_numpy(x))[0].detach().numpy() - want)
        assert np.abs(got - want)[:, :4].mean() < 0.5 * float_err[:, :4].mean(), (np.abs(got - want).max(),
                                                                                 float_err.max())


@pytest.fixture(scope="module")
def qat_run_nncf(teacher_pt, tiny_data, tmp_path_factory):
    """QAT as ``qat_run``, the quantizers in NNCF's placement."""
    out = tmp_path_factory.mktemp("qat") / "nncf"
    return run_qat(teacher_pt, tiny_data, teacher=teacher_pt, save_dir=out, report=False, ptq=False, placement="nncf",
                   **QAT_ARGS)


def _activation_writers(model: onnx.ModelProto) -> Counter:
    """Op types that write the tensors a QDQ file quantizes (``input``: the graph input), weights left out."""
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return Counter(producer[q.input[0]].op_type if q.input[0] in producer else "input" for q in model.graph.node
                   if q.op_type == "QuantizeLinear" and q.input[0] not in inits)


def test_the_nncf_placement_exports_what_it_trained_where_openvino_fuses_it(qat_run_nncf, qat_run, tiny_data, tmp_path):
    """The nncf-placement run's QDQ file quantizes activation outputs (SiLU's Mul, residual Adds, the image), never a
    Concat or Split output as the conv placement does; it computes what the fake-quantized model computed; the
    onnxruntime file still runs every convolution outside the decode in INT8; and its own OpenVINO IR keeps every
    quantizer where a convolution or activation writes, which OpenVINO fuses."""
    import onnxruntime as ort

    from yolo_kd.quantize.onnx_graph import kernel_share

    assert yaml.safe_load((qat_run_nncf.save_dir / "qat.yaml").read_text())["placement"] == "nncf"
    writers = _activation_writers(onnx.load(str(qat_run_nncf.int8_convs_onnx)))
    assert writers["Concat"] == writers["Split"] == 0 and writers["input"] == 1
    assert writers["Mul"] >= 60 and writers["Add"] >= 5, writers
    conv_placed = _activation_writers(onnx.load(str(qat_run.int8_convs_onnx)))
    assert conv_placed["Concat"] + conv_placed["Split"] >= 10 and conv_placed["Conv"] >= 70  # the other placement
    assert kernel_share(qat_run_nncf.int8_onnx).n_int8 == 81  # onnxruntime needs the conv outputs: its file adds them
    fq, fp = _fake_quant_and_float(qat_run_nncf)
    session = ort.InferenceSession(str(qat_run_nncf.int8_convs_onnx), providers=["CPUExecutionProvider"])
    for x in _val_images(tiny_data):
        want = fq(torch.from_numpy(x))[0].detach().numpy()
        err = np.abs(session.run(None, {session.get_inputs()[0].name: x})[0] - want)
        assert np.median(err) < 1e-3 and np.abs(fp(torch.from_numpy(x))[0].detach().numpy() - want).max() > 10 * np.median(err)
    if importlib.util.find_spec("openvino") is None:
        return
    from yolo_kd.quantize.openvino_graph import runtime_share
    from yolo_kd.quantize.qat import export_qat_openvino

    folder = export_qat_openvino(qat_run_nncf.int8_convs_onnx, tmp_path / "qat_int8_convs_openvino_model")
    written, _ = _fake_quantize_sites(folder)
    assert written["Concat"] == written["VariadicSplit"] == 0 and written["Swish"] >= 60, written
    assert runtime_share(folder).n_int8 >= 0.9 * 81


def test_qat_fine_tune_without_teacher(teacher_pt, tiny_data, tmp_path):
    import yolo_kd
    from yolo_kd.core.checkpoints import load_checkpoint_model
    from yolo_kd.quantize.qat import calibration_batches

    parent, _ = load_checkpoint_model(teacher_pt)
    q = prepare_qat(parent, calibration_batches(tiny_data, 2, 64))
    args = {k: v for k, v in QAT_ARGS.items() if k not in ("calib_images", "backend")}
    trainer = yolo_kd.train(q, data=tiny_data, project=str(tmp_path), name="plain", plots=False, **args)
    header = next(csv.reader(open(Path(trainer.save_dir) / "results.csv")))
    assert not any("kd_" in h for h in header)  # plain detection loss
    ckpt = torch.load(str(trainer.best), weights_only=False)
    assert is_qat(ckpt.get("ema") or ckpt["model"])


def test_resume_of_a_finished_run_exports_without_training(qat_run):
    rows = (qat_run.save_dir / "train" / "results.csv").read_text()
    qat_run.int8_onnx.unlink()
    again = run_qat(None, None, resume=qat_run.save_dir / "train" / "weights" / "last.pt", report=False, ptq=False)
    assert again.int8_onnx == qat_run.int8_onnx and again.int8_onnx.is_file()
    assert (qat_run.save_dir / "train" / "results.csv").read_text() == rows


def test_bad_input_is_one_line(capsys, tmp_path, tiny_data, teacher_pt, qat_run):
    assert "not found" in _one_line(capsys, ["--model", str(tmp_path / "no.pt"), "--data", tiny_data])
    assert "--model is required" in _one_line(capsys, ["--data", tiny_data])
    assert "--epochs 0 is invalid" in _one_line(capsys, ["--model", teacher_pt, "--data", tiny_data, "epochs=0"])
    assert "--calib-images 0" in _one_line(capsys, ["--model", teacher_pt, "--data", tiny_data, "--calib-images", "0"])
    assert "not the last.pt of a QAT run" in _one_line(capsys, ["--resume", teacher_pt])
    assert "fake-quantized already" in _one_line(capsys, ["--model", str(qat_run.best), "--data", tiny_data,
                                                          "--project", str(tmp_path), "--backend", "onnxruntime"])
    assert "quantize" in _one_line(capsys, ["--model", teacher_pt, "--data", tiny_data, "quantize=8"])
    assert not any(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == ["no.pt"]


def test_key_value_equals_flags_and_run_folders_increment(tmp_path):
    kv = ["model=m.pt", "teacher=t.pt", "data=d.yaml", "epochs=3", "imgsz=64", "calib_images=8", "backend=onnxruntime",
          f"project={tmp_path}", "name=run", "kd_cls=0.5", "lr0=0.02", "no_ptq=True"]
    flags = ["--model", "m.pt", "--teacher", "t.pt", "--data", "d.yaml", "--epochs", "3", "--imgsz", "64",
             "--calib-images", "8", "--backend", "onnxruntime", "--project", str(tmp_path), "--name", "run",
             "--kd-cls", "0.5", "--lr0", "0.02", "--no-ptq"]
    (a, ov_a), (b, ov_b) = qat_cmd.resolve(kv), qat_cmd.resolve(flags)
    assert vars(a) == vars(b) and ov_a == ov_b == {"lr0": 0.02, "kd_cls": "0.5"}
    assert (a.epochs, a.calib_images, a.no_ptq, a.name) == (3, 8, True, "run")
    (tmp_path / "run").mkdir()
    assert qat_cmd.resolve(kv)[0].name == "run-2" and qat_cmd.resolve([*kv, "exist_ok=True"])[0].name == "run"
