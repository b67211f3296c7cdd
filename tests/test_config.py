"""Distillation config: defaults from cfg/, overrides win, unknown/invalid values fail in one line; schedule values."""

import pytest

from yolo_kd.distill.config import load_kd_config
from yolo_kd.distill.schedule import (box_note, distill_multiplier, distilled_epochs, effective_box, effective_temperature,
                                      fine_tune_settings, for_run, temperature_note, until_note)
from yolo_kd.core.errors import KDError


def test_defaults_and_precedence(tmp_path):
    assert load_kd_config().feat_loss == "cwd"
    f = tmp_path / "kd.yaml"
    f.write_text("feat_loss: mse\ntemperature: 4\n")
    c = load_kd_config(f, temperature="1.5")  # CLI strings are coerced, and override the file
    assert (c.feat_loss, c.temperature) == ("mse", 1.5)
    assert load_kd_config({"cls": 0}).cls == 0.0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"bogus": 1}, "unknown distillation setting 'bogus'"),
        ({"feat_loss": "fgd"}, "unknown feature distillation loss 'fgd'"),
        ({"cls_loss": "kl"}, "unknown class distillation loss"),
        ({"cls": -1}, "negative"),
        ({"temperature": 0}, "must be > 0"),
        ({"schedule": "step"}, "unknown distillation schedule"),
        ({"weighting": "student"}, "unknown anchor weighting 'student'"),
        ({"box": "abc"}, "must be a number"),
    ],
)
def test_bad_settings_fail_in_one_line(kwargs, words):
    with pytest.raises(KDError, match=words) as e:
        load_kd_config(**kwargs)
    assert "\n" not in str(e.value)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(KDError, match="not found"):
        load_kd_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cls: [1,\n")
    with pytest.raises(KDError, match="not valid YAML"):
        load_kd_config(bad)


def test_schedule_values():
    lin = load_kd_config(schedule="linear", final_ratio=0.2, off_close_mosaic=False)
    cos = load_kd_config(schedule="cosine", final_ratio=0.0, off_close_mosaic=False)
    const = load_kd_config(schedule="constant")
    # (config, epoch, batch, batches per epoch, epochs, close_mosaic)
    assert distill_multiplier(lin, 0, 0, 10, 10, 0) == 1.0
    assert distill_multiplier(lin, 9, 10, 10, 10, 0) == pytest.approx(0.2)
    assert distill_multiplier(cos, 5, 0, 10, 10, 0) == pytest.approx(0.5)
    assert distill_multiplier(const, 3, 0, 10, 10, 0) == 1.0
    # off for the last close_mosaic epochs, but only when that leaves some distillation
    assert distill_multiplier(const, 8, 5, 10, 10, 2) == 0.0
    assert distill_multiplier(const, 7, 5, 10, 10, 2) == 1.0
    assert distill_multiplier(const, 1, 0, 10, 2, 10) == 1.0
    assert distill_multiplier(const, 11, 5, 10, 12, 10) == 1.0  # a 12-epoch run distils throughout
    assert distill_multiplier(const, 95, 0, 10, 100, 10) == 0.0


def test_until_ends_distillation_and_the_decay_spans_the_window():
    half = load_kd_config(schedule="linear", final_ratio=0.0, off_close_mosaic=False, until=0.5)
    assert distill_multiplier(half, 0, 0, 4, 10, 0) == 1.0
    assert distill_multiplier(half, 2, 2, 4, 10, 0) == pytest.approx(1 - 2.5 / 5)  # progress 0.25 = half the window
    assert distill_multiplier(half, 4, 3, 4, 10, 0) == pytest.approx(1 - 4.75 / 5)
    assert distill_multiplier(half, 5, 0, 4, 10, 0) == 0.0 and distill_multiplier(half, 9, 3, 4, 10, 0) == 0.0
    assert distilled_epochs(half, 10) == 5 and distilled_epochs(load_kd_config(until=1.0), 100, 10) == 90
    with pytest.raises(KDError, match="'until'"):
        load_kd_config(until=0)


def test_every_distils_a_subset_of_batches():
    """every=3: batches 0, 3, 6 ... of each epoch are distilled (with the schedule's value), the rest not at all."""
    third = load_kd_config(schedule="constant", off_close_mosaic=False, every=3)
    assert [distill_multiplier(third, 2, b, 10, 10, 0) for b in range(7)] == [1.0, 0, 0, 1.0, 0, 0, 1.0]
    cosine = load_kd_config(off_close_mosaic=False, every=2)
    assert distill_multiplier(cosine, 5, 4, 10, 10, 0) == distill_multiplier(load_kd_config(off_close_mosaic=False), 5, 4, 10, 10, 0)
    assert distill_multiplier(cosine, 5, 5, 10, 10, 0) == 0.0
    for bad in (0, 1.5):
        with pytest.raises(KDError, match="'every'"):
            load_kd_config(every=bad)


def test_legacy_teacher_half_key_is_translated():
    assert load_kd_config({"teacher_half": False}).teacher_precision == "fp32"
    assert load_kd_config(teacher_half="true").teacher_precision == "auto"
    with pytest.raises(KDError, match="unknown teacher_precision"):
        load_kd_config(teacher_precision="int8")


def test_dataset_checks_name_the_problem(tmp_path):
    from pathlib import Path

    from yolo_kd.data.datasets import resolve_data
    from yolo_kd.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "ds", "tiny", n_train=6, n_val=3)
    assert resolve_data(data) == str(data)
    with pytest.raises(KDError, match="not found"):
        resolve_data(tmp_path / "missing.yaml")
    with pytest.raises(KDError, match="unknown synthetic preset"):
        resolve_data("synthetic:huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"path: {tmp_path / 'nowhere'}\ntrain: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(KDError, match="does not exist"):
        resolve_data(bad)
    empty = tmp_path / "empty"
    (empty / "images" / "train").mkdir(parents=True)
    (empty / "images" / "val").mkdir(parents=True)
    e = tmp_path / "empty.yaml"
    e.write_text(f"path: {empty}\ntrain: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(KDError, match="'train' of .* has no images"):
        resolve_data(e)
    label = sorted(Path(tmp_path / "ds" / "labels" / "val").glob("*.txt"))[0]
    label.write_text("9 0.5 0.5 0.2 0.2\n")
    with pytest.raises(KDError, match="class id 9 but the dataset has 4 classes"):
        resolve_data(data)


def test_docs_term_table_is_the_registry():
    """docs/distillation.md shows the term registry's own table: adding a term updates the docs or fails here."""
    from pathlib import Path

    from yolo_kd.distill.terms import TERMS, ablations, markdown_table

    doc = (Path(__file__).resolve().parents[1] / "docs" / "distillation.md").read_text()
    assert markdown_table() in doc
    keys = load_kd_config().to_dict()
    assert all(t.weight_key in keys for t in TERMS)  # every term has its weight in cfg/kd_default.yaml
    assert set(ablations()) == {f"kd-{t.weight_key}" for t in TERMS}


def test_until_auto_distils_short_runs_throughout_and_the_first_half_of_long_ones():
    auto = load_kd_config(schedule="constant", off_close_mosaic=False)
    assert auto.until == "auto" and load_kd_config(until="AUTO").until == "auto"  # the default, any case
    assert distilled_epochs(auto, 59) == 59  # short: throughout
    assert distilled_epochs(auto, 60) == 30 and distilled_epochs(auto, 100) == 50  # long: the first half
    assert distill_multiplier(auto, 29, 9, 10, 60) == 1.0 and distill_multiplier(auto, 30, 0, 10, 60) == 0.0
    cos = load_kd_config(off_close_mosaic=False)  # the cosine decay spans the distilled half, as with until=0.5
    half = load_kd_config(off_close_mosaic=False, until=0.5)
    assert [distill_multiplier(cos, e, 0, 1, 80) for e in range(80)] == [distill_multiplier(half, e, 0, 1, 80) for e in range(80)]
    assert distilled_epochs(load_kd_config(until=1.0, off_close_mosaic=False), 100) == 100  # an explicit share wins
    with pytest.raises(KDError, match="'until'.*or auto"):
        load_kd_config(until="half")


def test_until_note_says_what_auto_chose_and_flags_long_runs_distilled_throughout():
    auto = until_note(100, "auto")
    assert "first 50%" in auto and "100-epoch" in auto and "\n" not in auto
    assert until_note(59, "auto") is None  # short runs: full distillation measured best (15 epochs), nothing to say
    full = until_note(60, 1.0)
    assert "distils throughout" in full and "kd_until=auto" in full
    assert until_note(59, 1.0) is None and until_note(100, 0.5) is None and until_note(100, 1.0, every=4) is None

def test_temperature_auto_is_4_on_short_runs_and_2_on_long_ones():
    auto = load_kd_config()
    assert auto.temperature == "auto" and load_kd_config(temperature="Auto").temperature == "auto"  # the default
    assert [effective_temperature("auto", e) for e in (10, 40, 59, 60, 100)] == [4.0, 4.0, 4.0, 2.0, 2.0]
    assert effective_temperature("auto", None) == 2.0 and effective_temperature(3, 10) == 3.0  # unknown length; explicit
    assert for_run(auto, 40).temperature == 4.0 and for_run(auto, 40).cls == auto.cls  # the rest is kept
    assert for_run(load_kd_config(temperature=1.5), 40).temperature == 1.5
    note = temperature_note(40, "auto")
    assert "T=4" in note and "40-epoch" in note and "\n" not in note
    assert temperature_note(100, "auto").count("T=2") == 1 and temperature_note(40, 2.0) is None
    with pytest.raises(KDError, match="'temperature' must be a number or auto"):
        load_kd_config(temperature="warm")


def test_box_auto_weighs_box_distillation_16_with_the_auto_temperature_on_short_and_long_runs():
    auto = load_kd_config()
    assert auto.box == "auto" and load_kd_config(box="AUTO").box == "auto" and auto.to_dict()["box"] == "auto"
    assert [effective_box("auto", e) for e in (10, 40, 59, 60, 239)] == [1.0, 1.0, 1.0, 4.0, 4.0]
    assert effective_box("auto", None) == 4.0 and effective_box(2, 100) == 2.0 and effective_box(0, 10) == 0.0  # unknown length; explicit
    assert effective_box("auto", 239, "distance") == 1.0 and for_run(auto, 239, "distance").box == 1.0  # no T^2 to match
    for epochs in (40, 100):
        run = for_run(auto, epochs)
        assert run.temperature ** 2 * run.box == 16.0 and run.cls == auto.cls == 1.0 and run.feat == 1.0
        assert run.to_dict()["box"] == run.box and auto.weights["box"] == "auto"  # the run's copy is settled, the config is not
    assert for_run(load_kd_config(box=0.5), 100).box == 0.5
    note = box_note(100, "auto")
    assert "weighs box distillation 4 in this 100-epoch run" in note and "\n" not in note
    assert "distillation 1 in this 40-epoch" in box_note(40, "auto") and box_note(100, 1.0) is None
    assert "distillation 1 in this 100-epoch run (1 for a box term on side distances" in box_note(100, "auto", "distance")
    with pytest.raises(KDError, match="'box' must be a number or auto"):
        load_kd_config(box="strong")
    with pytest.raises(KDError, match="'cls' must be a number, got 'auto'"):  # only the measured weight has a rule
        load_kd_config(cls="auto")


def test_fine_tunes_settle_auto_at_the_measured_t2_and_box_1_unless_a_value_is_named(tmp_path):
    assert fine_tune_settings(None, {"epochs": 10, "kd_cls": 0.5}) == {"kd_temperature": 2.0, "kd_box": 1.0}
    assert fine_tune_settings(None, {"kd_temperature": 4}) == {"kd_box": 1.0}  # a flag wins
    assert fine_tune_settings(None, {"kd_temperature": 4, "kd_box": 2}) == {}
    f = tmp_path / "kd.yaml"
    f.write_text("temperature: 3\nbox: 0.5\n")
    assert fine_tune_settings(f, {}) == {} and fine_tune_settings({"temperature": 1.5}, {}) == {"kd_box": 1.0}  # so does a file
