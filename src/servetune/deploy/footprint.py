"""A model's memory footprint as a replica: the peak RSS of a process that imports the server, loads the
model and warms it up (what a worker does before it is ready), measured in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MEASURE = """
import sys
from pathlib import Path
import servetune.serve.app  # noqa: F401 the server's own imports count too
from servetune.serve.predictor import Predictor
from servetune.serve.sample_image import generated_sample_jpeg
from servetune.serve.variant_profile import peak_rss_mb
Predictor(Path(sys.argv[1]), threads=1).warm_up(generated_sample_jpeg(), runs=1)
print(round(peak_rss_mb() * 2**20))
"""


def measure_footprint(model_path: Path, timeout_s: float = 300) -> int:
    """Peak RSS in bytes; ValueError with the loader's last error line when the model cannot be loaded."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model_path)], capture_output=True, text=True, timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise ValueError((result.stderr.strip().splitlines() or ["unknown error"])[-1])
    return int(result.stdout.strip().splitlines()[-1])
