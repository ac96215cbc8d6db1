"""The segment row: its Arrow schema and version, and how a row is encoded and decoded.

One Parquet row is one training window (docs/DATA.md, "Segment schema"). The writer
(:mod:`preprocessing.segments`) and the readers (``workflows/data.py``,
``workflows/evaluate.py``) both import this module, which needs only NumPy, PyArrow and
Pillow: Ray Data's decode workers never import the media stack.

Frames are JPEG files (Pillow, libjpeg's tables for the quality) and the target map an
8-bit grey PNG (Pillow, zlib level 1); any JPEG and PNG reader decodes them.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from avrsp.errors import InputError

SCHEMA_VERSION = 1

SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16()),
        pa.field("dataset", pa.string()),
        pa.field("video", pa.string()),
        pa.field("split", pa.string()),
        pa.field("fold", pa.int16()),
        pa.field("last_frame", pa.int32()),
        pa.field("num_frames", pa.int16()),
        pa.field("fps", pa.float32()),
        pa.field("native_height", pa.int32()),
        pa.field("native_width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("frames_jpeg", pa.list_(pa.binary())),
        pa.field("has_audio", pa.bool_()),
        pa.field("sample_rate", pa.int32()),
        pa.field("audio", pa.list_(pa.float32())),
        pa.field("target_png", pa.binary()),
        pa.field("target_source", pa.string()),
        pa.field("fixations", pa.list_(pa.float32())),
        pa.field("fixations_dropped", pa.int32()),
    ],
    metadata={b"avrsp.schema_version": str(SCHEMA_VERSION).encode()},
)


def encode_jpeg(frame: np.ndarray | Image.Image, quality: int) -> bytes:
    """One RGB frame (``uint8 [H, W, 3]`` or a Pillow image) as a baseline JPEG file
    (Pillow: 4:2:0 chroma, the standard Huffman tables, :func:`jpeg_quant_tables`)."""
    image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """(luminance, chrominance) quantization tables, 64 values row by row, that
    :func:`encode_jpeg` uses at ``quality`` (1–100).

    They are libjpeg's: the example tables of the JPEG standard (Annex K) scaled by
    ``5000 / quality`` percent below 50 and ``200 - 2 * quality`` percent from 50 on,
    clipped to 1…255. Read back from a file Pillow writes, so they are what it uses.
    """
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise InputError(f"jpeg_quality must be an integer in 1…100, got {quality!r}")
    with Image.open(io.BytesIO(encode_jpeg(np.zeros((8, 8, 3), np.uint8), quality))) as img:
        tables = img.quantization
    return list(tables[0]), list(tables[1])


def png_gray8(image: np.ndarray) -> bytes:
    """``uint8 [H, W]`` as an 8-bit greyscale PNG file (Pillow, zlib level 1)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 2 or 0 in image.shape:
        raise ValueError(f"png_gray8 needs a non-empty [H, W] image, got shape {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_map_png(saliency: np.ndarray) -> bytes:
    """A map ``[H, W]`` (any non-negative scale) as 8-bit grey PNG, maximum 255 (zeros stay)."""
    peak = float(saliency.max()) if saliency.size else 0.0
    if peak <= 0:
        return png_gray8(np.zeros(saliency.shape, np.uint8))
    scaled = saliency * np.float32(255.0 / peak)
    np.rint(scaled, out=scaled)
    return png_gray8(np.clip(scaled, 0, 255, out=scaled).astype(np.uint8))


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with every column of :data:`SCHEMA`) as an Arrow table."""
    columns: dict[str, pa.Array] = {}
    for fld in SCHEMA:
        values = [r[fld.name] for r in rows]
        if fld.name in ("audio", "fixations"):
            offsets = np.zeros(len(values) + 1, dtype=np.int32)
            offsets[1:] = np.cumsum([len(v) for v in values])
            flat = np.concatenate(values) if values else np.zeros(0, np.float32)
            columns[fld.name] = pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(flat.astype(np.float32))
            )
        else:
            columns[fld.name] = pa.array(values, type=fld.type)
    return pa.Table.from_arrays(list(columns.values()), schema=SCHEMA)


def decode_segment(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row back as arrays.

    Returns ``frames`` uint8 ``[T, H, W, 3]``, ``audio`` float32 ``[S]``, ``target`` float32
    ``[H, W]`` in [0, 1] (maximum 1), ``fixations`` float32 ``[K, 2]`` (x, y native
    pixels), plus the scalar columns unchanged.
    """
    version = int(row.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise InputError(f"segment schema_version {version}; this code reads {SCHEMA_VERSION}")
    frames = np.stack(
        [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in row["frames_jpeg"]]
    )
    target = np.asarray(Image.open(io.BytesIO(row["target_png"])), dtype=np.float32) / 255.0
    out = {k: v for k, v in row.items() if k not in ("frames_jpeg", "target_png")}
    out["frames"] = frames
    out["audio"] = np.asarray(row["audio"], dtype=np.float32)
    out["target"] = target
    out["fixations"] = np.asarray(row["fixations"], dtype=np.float32).reshape(-1, 2)
    return out
