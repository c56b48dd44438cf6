"""``tfs-gateway stream``: send a video's frames (or image files) over one gateway stream and
write one JSON line per frame: its results, or why it was dropped, or its error.

Video files are read with PyAV (``pip install 'tfs-gateway[video]'``); image files and folders
of images need nothing more. A progress line on stderr shows frames sent, answered, frames/s
and drops.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import grpc
from google.protobuf import json_format

from gateway._proto import classify_pb2, classify_pb2_grpc

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def frames_from(paths: list[Path]) -> Iterator[tuple[bytes, int]]:
    """(encoded frame, timestamp in µs) for every frame of every path, in order."""
    clock = 0
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                yield child.read_bytes(), clock
                clock += 1
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield path.read_bytes(), clock
            clock += 1
        else:
            yield from _video_frames(path)


def _video_frames(path: Path) -> Iterator[tuple[bytes, int]]:
    try:
        import av
    except ImportError:
        raise SystemExit(
            f"tfs-gateway: {path} looks like a video; reading videos needs PyAV: "
            "pip install 'tfs-gateway[video]'"
        ) from None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            buffer = io.BytesIO()
            frame.to_image().save(buffer, "JPEG", quality=90)  # type: ignore[no-untyped-call]
            seconds = 0.0
            if frame.pts is not None and stream.time_base is not None:
                seconds = float(frame.pts * stream.time_base)
            yield buffer.getvalue(), round(seconds * 1e6)


class Progress:
    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out, self.enabled = out, enabled
        self.sent = self.answered = self.dropped = self.failed = 0
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.answered / elapsed
        self.out.write(
            f"\rframes sent {self.sent}, answered {self.answered} ({rate:.1f}/s), "
            f"dropped {self.dropped}, failed {self.failed}" + ("\n" if final else "")
        )
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    tasks = [
        classify_pb2.ModelTask(
            model=classify_pb2.ModelRef(name=name), top_k=args.top_k, min_score=args.min_score
        )
        for name in args.model
    ]
    options = classify_pb2.StreamOptions(
        tasks=tasks,
        window=args.window,
        delivery=classify_pb2.DELIVERY_AS_READY if args.as_ready else classify_pb2.DELIVERY_ORDERED,
        drop_policy=classify_pb2.DROP_POLICY_DROP_STALE
        if args.drop_stale
        else classify_pb2.DROP_POLICY_QUEUE,
    )
    progress = Progress(sys.stderr, not args.quiet)

    def requests() -> Iterator[classify_pb2.StreamRequest]:
        yield classify_pb2.StreamRequest(options=options)
        pace = 1 / args.fps if args.fps else 0.0
        began = time.monotonic()
        for frame_id, (image, timestamp_us) in enumerate(frames_from(args.inputs)):
            if pace:
                time.sleep(max(0.0, began + frame_id * pace - time.monotonic()))
            yield classify_pb2.StreamRequest(
                frame=classify_pb2.Frame(frame_id=frame_id, image=image, timestamp_us=timestamp_us)
            )
            progress.sent += 1

    out = args.output.open("w") if args.output else sys.stdout
    try:
        with grpc.insecure_channel(
            args.gateway, options=[("grpc.max_send_message_length", 64 << 20)]
        ) as channel:
            stub = classify_pb2_grpc.ImageGatewayStub(channel)
            for response in stub.Stream(requests(), timeout=args.timeout):
                kind = response.WhichOneof("message")
                progress.answered += 1
                progress.dropped += kind == "dropped"
                progress.failed += kind == "error"
                line = {"status": kind, **json_format.MessageToDict(
                    getattr(response, kind), preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )}  # fmt: skip
                out.write(json.dumps(line) + "\n")
                progress.show()
    finally:
        progress.show(final=True)
        if args.output:
            out.close()
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "stream",
        help="stream a video's frames (or images) through the gateway; JSON lines out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", type=Path, nargs="+", help="video files, images, or folders of images"
    )
    parser.add_argument("--model", action="append", required=True, help="model to run (repeatable)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--min-score", type=float, default=0.0)
    parser.add_argument(
        "--window", type=int, default=0, help="frames in flight (0: gateway default)"
    )
    parser.add_argument(
        "--as-ready", action="store_true", help="results as they finish, not in order"
    )
    parser.add_argument(
        "--drop-stale", action="store_true", help="real time: drop frames that wait"
    )
    parser.add_argument(
        "--fps", type=float, default=0.0, help="send at this rate (0: as fast as allowed)"
    )
    parser.add_argument("--output", type=Path, help="JSON lines file (default: stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--gateway", default="localhost:9000")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="deadline of the whole stream"
    )
    parser.set_defaults(run=run)
