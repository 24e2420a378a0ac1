"""Bad input to the command-line entry points ends cleanly (issue #23): one line on stderr naming
the problem, exit code 2 (1 for a failed check), no traceback, nothing written.

The converter (`python -m models.checkpoints`) checks its arguments, its output path and its
check files before TensorFlow or JAX loads; a NaN anywhere (check files, tolerance, the model's
outputs) fails instead of passing every comparison.  The panoptic evaluator
(`python -m evaluation.panoptic`) names the file and the field of a ground-truth JSON that is
not what COCO panoptic says.  Both `main`s return their exit code, so most cases run in-process;
one subprocess per entry point runs the real `python -m ...`."""

import json
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evaluation import panoptic
from models import checkpoints
from tests.panoptic_cases import write_dataset
from tests.test_deeplab2 import FIXTURE, TINY_CKPT, TINY_FLAGS, TORCH_FIXTURE, TORCH_FLAGS

ROOT = Path(__file__).resolve().parent.parent
CHECK_INPUT = FIXTURE / "input.npy"
CHECK_OUTPUTS = FIXTURE / "axial_resnet_tiny" / "outputs_os16.npz"
CONVERT = ["deeplab2", str(TINY_CKPT), *TINY_FLAGS, "--output-stride", "16"]


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder that refuses new files: a chmod 555 one, or where root ignores permissions, /sys."""
    folder = tmp_path / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        if candidate.is_dir() and not _writable(candidate):
            return candidate
    pytest.skip("no folder here refuses files (root ignores permissions and /sys takes them)")


def _unreadable_file(tmp_path: Path) -> Path:
    """A file that cannot be read: a chmod 000 one, or where root ignores permissions,
    /proc/self/mem (reading its first page is an I/O error)."""
    path = tmp_path / "unreadable.json"
    path.write_text("{}")
    path.chmod(0)
    for candidate in (path, Path("/proc/self/mem")):
        try:
            with open(candidate, "rb") as f:
                f.read(1)
        except OSError:
            return candidate
    pytest.skip("no file here refuses reading")


def _with_nan(tmp_path: Path) -> dict:
    """The fixture's check files, each with one NaN."""
    x = np.load(CHECK_INPUT)
    x[1, 2, 3, 0] = np.nan
    np.save(tmp_path / "x_nan.npy", x)
    with np.load(CHECK_OUTPUTS) as archive:
        y = {key: archive[key] for key in archive.files}
    y["res5"] = y["res5"].copy()
    y["res5"][0, 0, 0, 1] = np.nan
    np.savez(tmp_path / "y_nan.npz", **y)
    return {"x": tmp_path / "x_nan.npy", "y": tmp_path / "y_nan.npz"}


# name -> (arguments after the format, with OUT for the output file and TMP for tmp_path; message)
ARGUMENT_CASES = {
    "tolerance nan": ([*CONVERT[1:], "--tolerance", "nan"], "argument --tolerance: the tolerance must be a finite "
                                                             "number >= 0, got 'nan'"),
    "tolerance -1": ([*CONVERT[1:], "--tolerance", "-1"], "the tolerance must be a finite number >= 0, got '-1'"),
    "tolerance inf": ([*CONVERT[1:], "--tolerance", "inf"], "the tolerance must be a finite number >= 0, got 'inf'"),
    "width -1": ([str(TINY_CKPT), "--preset", "deeplab2-axial-resnet-s", "--width", "-1"],
                 "argument --width: a width multiplier must be a finite number > 0, got '-1'"),
    "width nan": ([str(TINY_CKPT), "--preset", "deeplab2-axial-resnet-s", "--width", "nan"],
                  "argument --width: a width multiplier must be a finite number > 0, got 'nan'"),
    "stem width 0": ([str(TINY_CKPT), "--preset", "deeplab2-axial-resnet-s", "--stem-width", "0"],
                     "argument --stem-width: a width multiplier must be a finite number > 0, got '0'"),
    "num classes 0": ([str(TINY_CKPT), "--preset", "deeplab2-max-deeplab-s-backbone-cityscapes",
                       "--num-classes", "0"], "argument --num-classes: expected a positive integer, got '0'"),
    "blocks 0": ([str(TINY_CKPT), "--preset", "deeplab2-axial-resnet-s", "--blocks", "0,1,1,1"],
                 "--blocks takes four positive comma-separated counts, got '0,1,1,1'"),
    "pytorch width -1": ("pytorch", [str(TORCH_FIXTURE / "state_dict.npz"), "--preset", "pytorch-axial50s",
                                     "--width", "-1"], "a width multiplier must be a finite number > 0, got '-1'"),
    "pytorch num classes -3": ("pytorch", [str(TORCH_FIXTURE / "state_dict.npz"), "--preset", "pytorch-axial50s",
                                           "--num-classes", "-3"], "expected a positive integer, got '-3'"),
    "pytorch tolerance nan": ("pytorch", [str(TORCH_FIXTURE / "state_dict.npz"), *TORCH_FLAGS, "--tolerance", "nan"],
                              "the tolerance must be a finite number >= 0, got 'nan'"),
    "nan in check input": ([*CONVERT[1:], "--check-input", "TMP/x_nan.npy", "--check-outputs", str(CHECK_OUTPUTS)],
                           "check input TMP/x_nan.npy holds 1 NaN or infinite value(s) (first at [1, 2, 3, 0], nan)"),
    "nan in check outputs": ([*CONVERT[1:], "--check-input", str(CHECK_INPUT), "--check-outputs", "TMP/y_nan.npz"],
                             "check outputs TMP/y_nan.npz, array 'res5', holds 1 NaN or infinite value(s)"),
    "output is a folder": ([*CONVERT[1:], "--output", "TMP/out/folder.weights.h5"],
                           "--output: TMP/out/folder.weights.h5 is a folder; the converter writes a file there"),
    "sidecar is a folder": ([*CONVERT[1:], "--output", "TMP/out/sidecar.weights.h5"],
                            "--output: TMP/out/sidecar.json is a folder"),
    "output in a read-only folder": ([*CONVERT[1:], "--output", "READONLY/model.weights.h5"],
                                     "cannot write to the output folder READONLY: "),
}


def _argument_case(name: str, tmp_path: Path) -> tuple[list[str], str, Path]:
    """(argv, expected message, the output folder that must stay empty) of one case."""
    case = ARGUMENT_CASES[name]
    fmt, args, message = case if len(case) == 3 else ("deeplab2", *case)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "folder.weights.h5").mkdir(exist_ok=True)
    (out / "sidecar.json").mkdir(exist_ok=True)
    if not (tmp_path / "x_nan.npy").exists():
        _with_nan(tmp_path)
    read_only = _read_only_folder(tmp_path) if "READONLY" in " ".join(args) else None

    def fill(text: str) -> str:
        text = text.replace("TMP", str(tmp_path))
        return text.replace("READONLY", str(read_only)) if read_only else text

    argv = [{"deeplab2": "deeplab2", "pytorch": "axial-deeplab-pytorch"}[fmt], *map(fill, args)]
    if "--output" not in argv:
        argv += ["--output", str(out / "model.weights.h5")]
    return argv, fill(message), out


def _folder_contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("name", sorted(ARGUMENT_CASES))
def test_converter_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, name):
    argv, message, out = _argument_case(name, tmp_path)
    before = _folder_contents(out)
    assert checkpoints.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in captured.err and not captured.out
    assert _folder_contents(out) == before  # the two folders the cases need, and nothing else


def test_converter_bad_input_fails_before_any_library_loads(tmp_path):
    """The real entry point (`python -m models.checkpoints`), every case above in one process:
    exit code 2, one line each, and neither Keras nor TensorFlow nor JAX was imported."""
    cases = [_argument_case(name, tmp_path)[:2] for name in sorted(ARGUMENT_CASES)]
    script = textwrap.dedent("""
        import json, runpy, sys
        codes = []
        for argv in json.loads(sys.argv[1]):
            sys.argv = ["models.checkpoints", *argv]
            try:
                runpy.run_module("models.checkpoints", run_name="__main__", alter_sys=True)
            except SystemExit as exit_:
                codes.append(exit_.code)
            sys.stderr.flush()
        print(json.dumps({"codes": codes, "loaded": [m for m in ("keras", "tensorflow", "jax") if m in sys.modules]}))
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps([argv for argv, _ in cases])], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [2] * len(cases), "loaded": []}
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == len(cases), result.stderr
    for line, (_, message) in zip(lines, cases):
        assert line.startswith("error: ") and message in line, (line, message)


def test_converter_tolerance_and_help_from_the_shell(tmp_path):
    """`python -m models.checkpoints ... --tolerance nan`: exit 2, one line; --help still exit 0."""
    out = tmp_path / "model.weights.h5"
    result = subprocess.run([sys.executable, "-m", "models.checkpoints", *CONVERT, "--output", str(out),
                             "--check-input", str(CHECK_INPUT), "--check-outputs", str(CHECK_OUTPUTS),
                             "--tolerance", "nan"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: argument --tolerance: the tolerance must be a finite number >= 0, got 'nan' "
        "(see python -m models.checkpoints deeplab2 --help)"]
    assert not list(tmp_path.iterdir())
    assert checkpoints.main(["deeplab2", "--help"]) == 0


def test_nan_weights_fail_the_check_end_to_end(tmp_path, capsys):
    """A NaN weight makes every output NaN: `NaN > tolerance` is False, so the old check passed it
    (exit 0, weights and a JSON holding NaN written); now it is a failed check, exit 1.  (The
    TensorFlow lane only: under JAX, op-by-op dispatch makes this model's first run take half a
    minute; the jax-marked test below runs the same comparison on a stand-in model.)"""
    with np.load(TORCH_FIXTURE / "state_dict.npz") as archive:
        state = {key: archive[key] for key in archive.files}
    state["conv1.weight"] = state["conv1.weight"].copy()
    state["conv1.weight"][0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "state_dict.npz", **state)
    np.save(tmp_path / "x.npy", np.load(TORCH_FIXTURE / "input_nhwc.npy")[:1])  # one image: faster
    with np.load(TORCH_FIXTURE / "outputs.npz") as archive:
        np.savez(tmp_path / "y.npz", **{key: archive[key][:1] for key in archive.files})
    out = tmp_path / "out"
    out.mkdir()
    rc = checkpoints.main(["axial-deeplab-pytorch", str(tmp_path / "state_dict.npz"), *TORCH_FLAGS,
                           "--output", str(out / "model.weights.h5"), "--check-input", str(tmp_path / "x.npy"),
                           "--check-outputs", str(tmp_path / "y.npz")])
    captured = capsys.readouterr()
    assert rc == 1 and not captured.err
    assert "check passed" not in captured.out and "logits           max |difference| nan  not finite" in captured.out
    assert captured.out.strip().splitlines()[-1] == (
        "check failed: the model gives NaN or infinite values in logits, layer1, layer2, layer3, layer4; "
        "nothing written")
    assert not list(out.iterdir())


def _stand_in_loader(value: float):
    """A loader giving a two-layer model (global pooling, `logits`) whose first logit is
    value * x: NaN or inf makes it not finite.  Cheap on both backends."""
    def load(checkpoint, preset, input_size=None):
        import keras

        inputs = keras.Input((None, None, 3), name="image")
        logits = keras.layers.Dense(10, name="fc")(keras.layers.GlobalAveragePooling2D()(inputs))
        model = keras.Model(inputs, logits, name="stand_in")
        kernel = np.zeros((3, 10), np.float32)
        kernel[0, 0] = value
        model.get_layer("fc").kernel.assign(kernel)
        return checkpoints.Conversion(model, assigned=2)
    return load


@pytest.mark.jax
def test_nan_or_inf_in_the_models_outputs_fails_the_check_and_writes_nothing(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "x.npy", np.load(TORCH_FIXTURE / "input_nhwc.npy")[:1, :8, :8])
    np.savez(tmp_path / "y.npz", logits=np.zeros((1, 10), np.float32))
    out = tmp_path / "out"
    out.mkdir()
    for value, shown in ((math.nan, "nan"), (math.inf, "inf")):
        monkeypatch.setattr(checkpoints, "load_axial_deeplab_pytorch", _stand_in_loader(value))
        rc = checkpoints.main(["axial-deeplab-pytorch", str(TORCH_FIXTURE / "state_dict.npz"), *TORCH_FLAGS,
                               "--output", str(out / "model.weights.h5"), "--check-input", str(tmp_path / "x.npy"),
                               "--check-outputs", str(tmp_path / "y.npz"), "--tolerance", "1e30"])
        captured = capsys.readouterr()
        assert rc == 1 and not captured.err, captured.err
        assert captured.out.strip().splitlines()[-2:] == [
            f"  logits           max |difference| {shown}  not finite",
            "check failed: the model gives NaN or infinite values in logits; nothing written"]
        assert not list(out.iterdir())
    # The same stand-in with a finite weight passes, and writes: the check itself still works.
    monkeypatch.setattr(checkpoints, "load_axial_deeplab_pytorch", _stand_in_loader(0.0))
    assert checkpoints.main(["axial-deeplab-pytorch", str(TORCH_FIXTURE / "state_dict.npz"), *TORCH_FLAGS,
                             "--output", str(out / "model.weights.h5"), "--check-input", str(tmp_path / "x.npy"),
                             "--check-outputs", str(tmp_path / "y.npz")]) == 0
    assert "check passed: 1 outputs within 0.0001" in capsys.readouterr().out
    assert json.loads((out / "model.json").read_text())["check"]["max_abs_difference"] == {"logits": 0.0}


@pytest.mark.jax
def test_converter_build_and_write_failures_are_one_line(tmp_path, capsys, monkeypatch):
    """What the parser cannot foresee: a width that rounds a layer to 0 channels, and a disk
    that refuses the weights at the end (ENOSPC).  One line, exit 2, nothing left behind."""
    out = tmp_path / "out"
    out.mkdir()
    checkpoint = str(TORCH_FIXTURE / "state_dict.npz")
    assert checkpoints.main(["axial-deeplab-pytorch", checkpoint, "--preset", "pytorch-axial50s", "--width", "1e-9",
                             "--output", str(out / "model.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: pytorch-axial50s cannot be built with these overrides: ") and \
        len(err.strip().splitlines()) == 1, err

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "load_axial_deeplab_pytorch", _stand_in_loader(0.0))
    monkeypatch.setattr(checkpoints.os, "replace", full)
    assert checkpoints.main(["axial-deeplab-pytorch", checkpoint, *TORCH_FLAGS,
                             "--output", str(out / "model.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: cannot write {out / 'model.weights.h5'}: No space left on device"]
    assert not list(out.iterdir())


# --- the panoptic evaluator ------------------------------------------------------------------

def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _segment(data, field, value):
    data["annotations"][0]["segments_info"][0][field] = value


PANOPTIC_CASES = {
    # name -> (how the dataset is broken, the file named, the expected message after the file)
    "ground truth is a folder": (lambda p, tmp: (p["gt_json"].unlink(), p["gt_json"].mkdir()), "gt_json",
                                 "ground-truth JSON is a folder, not a file: "),
    "ground truth unreadable": (lambda p, tmp: p.__setitem__("gt_json", _unreadable_file(tmp)), "gt_json",
                                "ground-truth JSON cannot be read: "),
    "category_id grass": (lambda p, tmp: _edit(p["gt_json"], lambda d: _segment(d, "category_id", "grass")),
                          "gt_json", ': annotations[0].segments_info[0].category_id is "grass"; expected an integer'),
    "file_name 5": (lambda p, tmp: _edit(p["gt_json"], lambda d: d["annotations"][0].__setitem__("file_name", 5)),
                    "gt_json", ": annotations[0].file_name is 5; expected the PNG's file name"),
    "image_id [1]": (lambda p, tmp: _edit(p["gt_json"], lambda d: d["annotations"][0].__setitem__("image_id", [1])),
                     "gt_json", ": annotations[0].image_id is [1]; expected an integer or a string"),
    "area NaN": (lambda p, tmp: _edit(p["gt_json"], lambda d: _segment(d, "area", math.nan)), "gt_json",
                 ": annotations[0].segments_info[0].area is NaN; expected a finite number >= 0 (pixels)"),
    "categories id grass": (lambda p, tmp: _edit(p["gt_json"], lambda d: d["categories"][0].__setitem__("id", "grass")),
                            "gt_json", ': categories[0].id is "grass"; expected an integer'),
    "segments_info not a list": (
        lambda p, tmp: _edit(p["gt_json"], lambda d: d["annotations"][0].__setitem__("segments_info", {})),
        "gt_json", ": annotations[0].segments_info is {}; expected a list of segments"),
    "prediction image_id [1]": (
        lambda p, tmp: _edit(p["pred_json"], lambda d: d["annotations"][0].__setitem__("image_id", [1])),
        "pred_json", ": annotations[0].image_id is [1]; expected an integer or a string"),
    "prediction category_id grass": (
        lambda p, tmp: _edit(p["pred_json"], lambda d: _segment(d, "category_id", "grass")),
        "pred_json", ': annotations[0].segments_info[0].category_id is "grass"; expected an integer'),
}


def _panoptic_argv(paths, out: Path) -> list[str]:
    return ["--gt_json_file", str(paths["gt_json"]), "--gt_folder", str(paths["gt_folder"]),
            "--pred_json_file", str(paths["pred_json"]), "--pred_folder", str(paths["pred_folder"]),
            "--json", str(out)]


@pytest.mark.parametrize("name", sorted(PANOPTIC_CASES))
def test_panoptic_bad_json_is_one_line_naming_file_and_field(tmp_path, capsys, name):
    breaks, named, message = PANOPTIC_CASES[name]
    paths = write_dataset(tmp_path / "data", 5, images=2)
    breaks(paths, tmp_path)
    out = tmp_path / "result.json"
    assert panoptic.main(_panoptic_argv(paths, out)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and str(paths[named]) in err and message in err, err
    assert not out.exists()


def test_panoptic_from_the_shell_and_its_usage_errors(tmp_path):
    """`python -m evaluation.panoptic` with an `area: NaN` (once reported as 'lacks id or
    category_id'), and a missing argument: one line each, exit 2."""
    paths = write_dataset(tmp_path / "data", 5, images=2)
    _edit(paths["gt_json"], lambda d: _segment(d, "area", math.nan))
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, "-m", "evaluation.panoptic", *_panoptic_argv(paths, out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr and not out.exists()
    assert result.stderr.strip().splitlines() == [
        f"error: ground-truth JSON {paths['gt_json']}: annotations[0].segments_info[0].area is NaN; "
        "expected a finite number >= 0 (pixels)"]
    result = subprocess.run([sys.executable, "-m", "evaluation.panoptic", "--gt_folder", str(paths["gt_folder"])],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: the following arguments are required: --gt_json_file, --pred_json_file, --pred_folder "
        "(see python -m evaluation.panoptic --help)"]
