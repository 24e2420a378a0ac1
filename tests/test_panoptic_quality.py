"""PQ against the official panoptic evaluator (cityscapesscripts, a copy of COCO panopticapi)."""

import contextlib
import io
import json

import numpy as np
import pytest

from evaluation import panoptic
from evaluation.panoptic_quality import PanopticQuality, Segment
from tests.panoptic_cases import write_dataset

CASES = 50


def oracle(paths) -> dict:
    """The official per-image core and averaging, without its process pool and prints."""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as official

    gt = json.loads(paths["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(paths["pred_json"].read_text())["annotations"]}
    categories = {c["id"]: c for c in gt["categories"]}
    pairs = [(a, pred[a["image_id"]]) for a in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        stats = official.pq_compute_single_core(0, pairs, str(paths["gt_folder"]),
                                                str(paths["pred_folder"]), categories)
    results = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        try:
            results[name], per_class = stats.pq_average(categories, isthing=isthing)
        except ZeroDivisionError:  # the official code's answer to an empty split
            results[name] = None
        if name == "All":
            results["per_class"] = {k: v for k, v in per_class.items()
                                    if (stats.pq_per_cat[k].tp + stats.pq_per_cat[k].fp + stats.pq_per_cat[k].fn)}
    return results


@pytest.mark.parametrize("seed", range(CASES))
def test_pq_equals_the_official_script(tmp_path, seed):
    paths = write_dataset(tmp_path, seed, with_stuff=seed % 10 != 0)  # every 10th: no stuff classes
    ours, _ = panoptic.evaluate(str(paths["gt_json"]), str(paths["gt_folder"]),
                                str(paths["pred_json"]), str(paths["pred_folder"]))
    want = oracle(paths)
    for split in ("All", "Things", "Stuff"):
        if want[split] is None:
            assert ours[split] == {"pq": None, "sq": None, "rq": None, "n": 0}
            continue
        assert ours[split]["n"] == want[split]["n"]
        for k in ("pq", "sq", "rq"):
            assert ours[split][k] == pytest.approx(want[split][k], abs=1e-6), (split, k)
    assert set(ours["per_class"]) == set(want["per_class"])
    for c, r in want["per_class"].items():
        for k in ("pq", "sq", "rq"):
            assert ours["per_class"][c][k] == pytest.approx(r[k], abs=1e-6)


def test_cases_exercise_every_rule(tmp_path):
    # Guards the oracle test: the generated cases contain matches, misses, false positives,
    # and predictions ignored on void and on crowd regions.
    totals = {"tp": 0, "fp": 0, "fn": 0}
    for seed in range(CASES):
        paths = write_dataset(tmp_path / str(seed), seed)
        results, _ = panoptic.evaluate(str(paths["gt_json"]), str(paths["gt_folder"]),
                                       str(paths["pred_json"]), str(paths["pred_folder"]))
        for r in results["per_class"].values():
            for k in totals:
                totals[k] += r[k]
    assert all(v > 20 for v in totals.values()), totals


def test_crowd_and_void_rules_by_hand():
    metric = PanopticQuality({1: True, 2: False})
    gt = np.zeros((4, 8), int)
    gt[:, :4] = 10          # person, matched
    gt[:, 4:6] = 11         # crowd of person
    pred = np.zeros((4, 8), int)
    pred[:, :4] = 20        # matches 10 exactly
    pred[:, 4:7] = 21       # 2/3 on crowd of its own category: ignored
    pred[:, 7] = 22         # stuff prediction on void: ignored
    metric.update(gt, {10: Segment(1), 11: Segment(1, iscrowd=True)},
                  pred, {20: Segment(1), 21: Segment(1), 22: Segment(2)})
    result = metric.result()
    assert result["per_class"][1] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}
    assert result["Stuff"] == {"pq": None, "sq": None, "rq": None, "n": 0}


def test_cli_matches_oracle_and_writes_json(tmp_path, capsys):
    paths = write_dataset(tmp_path, 123)
    out = tmp_path / "result.json"
    code = panoptic.main(["--gt_json_file", str(paths["gt_json"]), "--gt_folder", str(paths["gt_folder"]),
                          "--pred_json_file", str(paths["pred_json"]), "--pred_folder", str(paths["pred_folder"]),
                          "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "All" in printed and "Things" in printed and "Stuff" in printed
    written = json.loads(out.read_text())
    assert written["All"]["pq"] == pytest.approx(oracle(paths)["All"]["pq"], abs=1e-6)


def _break(paths, how):
    if how == "missing png":
        (paths["pred_folder"] / "img001.png").unlink()
        return "img001.png"
    if how == "segment not in json":
        pred = json.loads(paths["pred_json"].read_text())
        pred["annotations"][0]["segments_info"].pop()
        paths["pred_json"].write_text(json.dumps(pred))
        return "pred.json"
    if how == "not coco panoptic":
        paths["pred_json"].write_text(json.dumps({"images": []}))
        return "pred.json"
    if how == "invalid json":
        paths["gt_json"].write_text("{not json")
        return "gt.json"
    if how == "truncated png":
        png = paths["gt_folder"] / "img002.png"
        png.write_bytes(png.read_bytes()[:40])
        return "img002.png"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["missing png", "segment not in json", "not coco panoptic",
                                 "invalid json", "truncated png"])
def test_cli_bad_input_one_line_error(tmp_path, capsys, how):
    paths = write_dataset(tmp_path, 7)
    named = _break(paths, how)
    code = panoptic.main(["--gt_json_file", str(paths["gt_json"]), "--gt_folder", str(paths["gt_folder"]),
                          "--pred_json_file", str(paths["pred_json"]), "--pred_folder", str(paths["pred_folder"])])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert named in err


# --- inputs where the official code departs from the definition (issue #10, item 7) -----------

def _hand_made_case(tmp_path, gt_segments_json, gt_ids, pred_ids, pred_segments_json):
    """One 16x16 image in the COCO panoptic layout (ground truth and prediction)."""
    from PIL import Image

    from tests.panoptic_cases import categories, id_to_rgb

    paths = {"gt_folder": tmp_path / "gt", "pred_folder": tmp_path / "pred",
             "gt_json": tmp_path / "gt.json", "pred_json": tmp_path / "pred.json"}
    for folder, ids in ((paths["gt_folder"], gt_ids), (paths["pred_folder"], pred_ids)):
        folder.mkdir()
        Image.fromarray(id_to_rgb(ids)).save(folder / "img.png")
    paths["gt_json"].write_text(json.dumps({"categories": categories(), "annotations": [
        {"image_id": "img", "file_name": "img.png", "segments_info": gt_segments_json}]}))
    paths["pred_json"].write_text(json.dumps({"annotations": [
        {"image_id": "img", "file_name": "img.png", "segments_info": pred_segments_json}]}))
    return paths


def _ours_and_official(paths, capsys):
    ours, _ = panoptic.evaluate(str(paths["gt_json"]), str(paths["gt_folder"]), str(paths["pred_json"]),
                                str(paths["pred_folder"]))
    notes = capsys.readouterr().err
    return ours, oracle(paths), notes


def test_ground_truth_area_comes_from_the_json_as_officially(tmp_path, capsys):
    gt = np.zeros((16, 16), np.int64)
    gt[:10, :12] = 5                      # 120 pixels, but the JSON says 200
    pred = np.zeros((16, 16), np.int64)
    pred[:10, :10] = 9                    # 100 pixels inside it: IoU 100/120 by pixels, 100/200 by JSON
    pred[10:, :] = 7                      # stuff on void
    paths = _hand_made_case(tmp_path, [{"id": 5, "category_id": 1, "iscrowd": 0, "area": 200}], gt, pred,
                            [{"id": 9, "category_id": 1}, {"id": 7, "category_id": 4}])
    ours, official, notes = _ours_and_official(paths, capsys)
    assert ours["All"]["pq"] == pytest.approx(official["All"]["pq"], abs=1e-9)
    assert ours["per_class"][1]["tp"] == 0  # 100/200 is not above 0.5: unmatched, as officially
    assert "have a JSON area unlike their pixel count (first: " in notes and "img.png" in notes


def test_ground_truth_ids_missing_from_the_json_are_skipped_as_officially(tmp_path, capsys):
    gt = np.zeros((16, 16), np.int64)
    gt[:8] = 5
    gt[8:] = 6                            # id 6 is in the PNG but not in the JSON
    pred = np.zeros((16, 16), np.int64)
    pred[:8] = 9
    pred[8:, :4] = 10                     # lies on the undescribed id: not void, so a false positive
    paths = _hand_made_case(tmp_path, [{"id": 5, "category_id": 4, "iscrowd": 0, "area": 128}], gt, pred,
                            [{"id": 9, "category_id": 4}, {"id": 10, "category_id": 1}])
    ours, official, notes = _ours_and_official(paths, capsys)
    for split in ("All", "Things", "Stuff"):
        assert ours[split]["pq"] == pytest.approx(official[split]["pq"], abs=1e-9), split
    assert ours["per_class"][1]["fp"] == 1
    assert "ground-truth PNG id(s) in 1 image(s) are not in the JSON" in notes


def _cli(paths, *extra):
    return panoptic.main(["--gt_json_file", str(paths["gt_json"]), "--gt_folder", str(paths["gt_folder"]),
                          "--pred_json_file", str(paths["pred_json"]), "--pred_folder", str(paths["pred_folder"]),
                          *extra])


def test_ground_truth_without_annotations_says_there_is_nothing_to_evaluate(tmp_path, capsys):
    paths = write_dataset(tmp_path, 3)
    gt = json.loads(paths["gt_json"].read_text())
    gt["annotations"] = []
    paths["gt_json"].write_text(json.dumps(gt))
    assert _cli(paths) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: nothing to evaluate: the ground-truth JSON lists no annotations: "
                                f"{paths['gt_json']}"]


@pytest.mark.parametrize("target", ["a folder", "under a file"])
def test_cli_json_output_that_cannot_be_written_is_one_line(tmp_path, capsys, target):
    paths = write_dataset(tmp_path, 4)
    if target == "a folder":
        out = tmp_path / "results"
        out.mkdir()
    else:
        (tmp_path / "plain").write_text("")
        out = tmp_path / "plain" / "results.json"
    assert _cli(paths, "--json", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(out) in err
