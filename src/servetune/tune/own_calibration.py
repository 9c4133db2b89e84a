"""Where the variants of the user's model are calibrated (`tune --model`), and the cache of their calibrations.

A tune simulates the machines it will run on: for `--backend local` each variant is calibrated on this
machine (`tune/measure.py`), for `--backend kubernetes` on the user's cluster (`tune/measure_kubernetes.py`:
one pod at a time in their namespace, from an image that holds the variants in /models/, deleted after),
or wherever `--calibrate-on` says (the tune then warns that it simulates one backend with another's
calibration). A calibration is kept in CACHE/calibrations/<sha256>/<where>/calibration.json, <where> being
`local` or `kubernetes-<API server>`: it is reused only for the same file on the same backend and cluster.

A cluster calibration needs the image (`--image`); without one, the variants still to calibrate are put
into a build folder with a two-line Dockerfile (OUT/variants-image/) and the user is told to build and push
it and run again: everything done so far is cached.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servetune import __version__
from servetune.deploy.manifests import MODELS_DIR_IN_IMAGE
from servetune.errors import ServetuneError
from servetune.model.variants import Variant
from servetune.tune.calibration import Calibration, load_calibration, save_calibration
from servetune.tune.measure import TARGETS, calibrate_model
from servetune.tune.measure_kubernetes import SECONDS, Place

LOCAL_SECONDS = 6.0  # per load on this machine; on a cluster metrics-server's window asks for SECONDS
VARIANTS_IMAGE = "variants-image"


class ImageNeeded(ServetuneError):
    """A cluster calibration without an image holding the variants: the message says how to build one."""


@dataclass(frozen=True)
class CalibrationSite:
    """Where the variants are calibrated: this machine (cluster None) or a cluster, and how."""

    limits: tuple[float, ...]
    seconds: float | None = None  # per load [default: LOCAL_SECONDS, on a cluster SECONDS]
    cluster: Place | None = None
    host: str = ""  # the cluster's API server, which keys its calibrations

    @property
    def backend(self) -> str:
        return "local" if self.cluster is None else "kubernetes"

    @property
    def key(self) -> str:
        if self.cluster is None:
            return "local"
        return "kubernetes-" + re.sub(r"[^A-Za-z0-9.-]+", "-", self.host.split("://")[-1]).strip("-")

    def text(self) -> str:
        return "this machine" if self.cluster is None else f"the cluster at {self.host}"

    def steps(self) -> int:
        """Progress steps of one calibration (each limit's start and targets; locally the added replica)."""
        return len(self.limits) * (1 + len(TARGETS)) + (1 if self.cluster is None else 0)


def calibration_site(limits: tuple[float, ...], seconds: float | None, cluster: Place | None) -> CalibrationSite:
    """The site, with the cluster's API server read from its kubeconfig (no request is sent)."""
    if cluster is None:
        return CalibrationSite(limits, seconds)
    from servetune.deploy.kubernetes_client import connect

    connection = connect(cluster.kubeconfig, cluster.context)
    connection.close()
    return CalibrationSite(limits, seconds, cluster, connection.host)


def cached_file(cache: Path, variant: Variant, site: CalibrationSite) -> Path:
    return cache / "calibrations" / variant.sha256[:16] / site.key / "calibration.json"


def cached(cache: Path, variant: Variant, site: CalibrationSite) -> tuple[Calibration, Path] | None:
    """The variant's calibration on this site from the cache, when one of this very file is there."""
    file = cached_file(cache, variant, site)
    if file.is_file():
        calibration = load_calibration(file)
        if calibration.model_sha256 == variant.sha256 and calibration.backend == site.backend:
            return calibration, file
    return None


def calibrated(cache: Path, variant: Variant, site: CalibrationSite, progress=None,
               step: Callable[[str], None] = lambda text: None) -> tuple[Calibration, Path]:
    """The variant's calibration (and its file): from the cache, else measured on the site (`step` hears it
    begin and, on a cluster, each object applied and deleted; `progress` shows its steps) and kept."""
    if found := cached(cache, variant, site):
        return found
    path = variant.path
    assert path is not None, "a refused variant is not calibrated"
    step(f"calibrate {path.stem} on {site.text()}")
    task = progress.add_task(f"calibrate {path.stem}", total=site.steps()) if progress else None

    def advance(text: str) -> None:
        if progress is not None:
            progress.update(task, advance=1, description=text)

    if site.cluster is None:
        calibration = calibrate_model(path, seconds=site.seconds or LOCAL_SECONDS, limits=site.limits,
                                      progress=advance)
    else:
        from servetune.tune.measure_kubernetes import calibrate_on_cluster

        calibration = calibrate_on_cluster(path, site.cluster, seconds=site.seconds or SECONDS, limits=site.limits,
                                           progress=advance, on_event=step)
    return calibration, save_calibration(calibration, cached_file(cache, variant, site))


def image_needed(out: Path, variants: list[Variant], site: CalibrationSite) -> ImageNeeded:
    """OUT/variants-image/ (the variants' files and a Dockerfile putting them in servetune's image) and the
    error that tells the user to build it, push it and run again with --image."""
    folder = out / VARIANTS_IMAGE
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for variant in variants:
        assert variant.path is not None
        shutil.copyfile(variant.path, folder / variant.path.name)
        names.append(variant.path.name)
    (folder / "Dockerfile").write_text(
        f"# servetune's serving image with your model's variants: docker build -t IMAGE {folder}\n"
        f"FROM servetune:{__version__}\nCOPY {' '.join(names)} {MODELS_DIR_IN_IMAGE}/\n", encoding="utf-8")
    return ImageNeeded(
        f"--backend kubernetes calibrates your model's variants on {site.text()}, from an image that holds "
        f"them: build it from {folder} (make image; docker build -t REGISTRY/servetune-variants:1 {folder}; "
        "docker push REGISTRY/servetune-variants:1) and run the same command again with --image "
        "REGISTRY/servetune-variants:1 (the variants are cached), or add --calibrate-on local to simulate the "
        "cluster with this machine's calibration")
