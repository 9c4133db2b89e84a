"""The generated sample image that GET /test classifies by default."""

from __future__ import annotations

import io
import tracemalloc

from PIL import Image

from servetune.serve.sample_image import SIDE, draw_sample, generated_sample_jpeg, sample_image_bytes


def test_generated_sample_is_a_photo_sized_deterministic_jpeg():
    data = generated_sample_jpeg()
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (SIDE, SIDE) and image.mode == "RGB"
    # textured like a photo: a flat drawing would compress to a few tens of KB and decode too fast
    assert 200_000 < len(data) < 1_000_000
    assert draw_sample(side=64).tobytes() == draw_sample(side=64).tobytes()


def test_drawing_it_needs_little_memory():
    # every serving process draws it at start; float64 full-size temporaries peaked at 185 MB
    tracemalloc.start()
    try:
        draw_sample()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 120 * 1024 * 1024


def test_a_given_file_is_used_as_it_is(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"any bytes")
    assert sample_image_bytes(path) == b"any bytes"
    assert sample_image_bytes(None) == generated_sample_jpeg()
