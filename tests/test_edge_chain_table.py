"""The edge chain's verdict lines (benchmarks/edge_chain_table.py): each of issue 16's targets read off the rows."""

import importlib.util
import statistics
from pathlib import Path

spec = importlib.util.spec_from_file_location("edge_chain_table", Path(__file__).parents[1] / "benchmarks" / "edge_chain_table.py")
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)


def row(stage, maps, gflops=6.0, x=1.0, x_ov=None):
    std = statistics.stdev(maps) if len(maps) > 1 else 0.0  # as the table's rows carry it
    return {"stage": stage, "map50_95": maps, "mean": statistics.mean(maps), "std": std, "gflops": gflops, "x_baseline": x,
            "x_baseline_openvino": x_ov}


def test_every_target_met_reads_met_with_the_numbers():
    rows = [row("vanilla", [0.60, 0.62]), row("kdft", [0.70, 0.70]), row("pruned", [0.695, 0.695], gflops=2.9),
            row("ft", [0.70, 0.70], gflops=2.9), row("ptq", [0.68, 0.68], gflops=2.9, x=0.22),
            row("qat_kd", [0.70, 0.70], gflops=2.9, x=0.2)]
    final, pruning, qat = table.verdicts(rows)
    assert final == ("final model on onnxruntime (fastest INT8 file: qat_kd): 0.20x the baseline's latency (target <= 0.25x), "
                     "mAP50-95 +9.0 against it (target >= 0): met")
    assert pruning.startswith("pruning: 0.48x the GFLOPs, mAP50-95 -0.5 against the unpruned student (given the same extra epochs")
    assert pruning.endswith(": met")
    assert qat == ("QAT with teacher: +0.0 against its FP32 fine-tune (target >= -0.1), +2.0 against PTQ "
                   "(seed spread 0.0; target: more than the spread): met")


def test_each_target_missed_reads_not_met():
    rows = [row("vanilla", [0.60, 0.62]), row("kd", [0.70, 0.72]), row("pruned", [0.60, 0.66], gflops=3.0),
            row("ft", [0.70, 0.70]), row("ptq", [0.69, 0.61], x=0.3), row("qat_kd", [0.66, 0.66], x=0.3)]
    final, pruning, qat = table.verdicts(rows)
    assert final.endswith("not met") and "0.30x" in final
    assert "WITHOUT the extra epochs" in pruning and pruning.endswith("not met")  # no kdft run: compared with kd
    assert "-4.0 against its FP32 fine-tune" in qat and "seed spread 5.7" in qat and qat.endswith("not met")


def test_stages_not_run_give_no_line():
    assert table.verdicts([row("vanilla", [0.6]), row("kd", [0.7])]) == []
    only_ptq = table.verdicts([row("vanilla", [0.6]), row("ptq", [0.61], x=0.24)])
    assert only_ptq == ["final model on onnxruntime (fastest INT8 file: ptq): 0.24x the baseline's latency (target <= 0.25x), "
                        "mAP50-95 +1.0 against it (target >= 0): met"]


def test_the_final_model_is_the_fastest_int8_file_of_each_runtime_against_the_baseline_on_it():
    rows = [row("vanilla", [0.60], x_ov=1.0), row("ptq", [0.59], x=0.5, x_ov=0.4), row("qat_kd", [0.61], x=0.7, x_ov=0.24)]
    ort, ov = table.verdicts(rows)
    assert ort.startswith("final model on onnxruntime (fastest INT8 file: ptq): 0.50x") and ort.endswith("-1.0 against it (target >= 0): not met")
    assert ov.startswith("final model on OpenVINO (fastest INT8 file: qat_kd): 0.24x") and ov.endswith("+1.0 against it (target >= 0): met")
