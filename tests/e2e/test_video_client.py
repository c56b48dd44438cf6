"""``tfs-gateway stream`` on a synthetic video made in code (PyAV) and on a folder of frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from tests import images
from tests.conftest import ROOT, GatewayProcess

SEGMENTS = [("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255))]
FRAMES_EACH = 8


def make_video(path: Path) -> None:
    """24 frames at 24 fps, 8 each of red, green and blue, as MPEG-4 in an .mp4 container."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for _, rgb in SEGMENTS:
            pixels = np.zeros((120, 160, 3), np.uint8)
            pixels[:] = rgb
            for _ in range(FRAMES_EACH):
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_stream(gateway: GatewayProcess, *args: str) -> tuple[list[dict], str]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "stream", *args, "--gateway", gateway.target],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def test_stream_a_synthetic_video_gets_one_result_per_frame(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    video = tmp_path / "colours.mp4"
    make_video(video)
    lines, progress = run_stream(
        gateway, str(video), "--model", "colors", "--top-k", "1", "--window", "4"
    )
    assert len(lines) == 3 * FRAMES_EACH
    assert [line["frame_id"] for line in lines] == [str(i) for i in range(24)]  # ordered
    assert [line["results"][0]["classifications"][0]["label"] for line in lines] == [
        name for name, _ in SEGMENTS for _ in range(FRAMES_EACH)
    ]
    timestamps = [int(line["timestamp_us"]) for line in lines]
    assert timestamps == sorted(timestamps) and timestamps[1] - timestamps[0] == 41_667
    assert "frames sent 24, answered 24" in progress and "dropped 0" in progress


def test_stream_a_folder_of_frames_to_a_file_with_two_models(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "001.png").write_bytes(images.encode(images.scene(), "PNG"))
    (folder / "002.jpg").write_bytes(images.solid("yellow"))
    out = tmp_path / "results.jsonl"
    run_stream(
        gateway,
        str(folder),
        "--model",
        "colors",
        "--model",
        "shapes",
        "--output",
        str(out),
        "--quiet",
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["result", "result"]
    first_detections = lines[0]["results"][1]["detections"]
    assert [d["label"] for d in first_detections] == ["red", "blue"]
    assert lines[1]["results"][0]["classifications"][0]["label"] == "yellow"
