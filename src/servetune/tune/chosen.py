"""What a tune of the user's own model hands back (`tune --model`): the chosen model file, their own
manifest with the chosen numbers (`deploy/k8s_update.py`), its diff against theirs, and the two-line
Dockerfile that puts the model into servetune's serving image, in `OUT/chosen/`.

The image is named after theirs: the same repository with the tag `servetune-<model>`, so it goes to the
registry their nodes already pull from. The model file, its threads and the worker count are the image's
(environment and command), so their manifest changes only in its numbers and its image.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from servetune import __version__
from servetune.config import DeploymentSpec
from servetune.deploy.k8s_update import manifest_diff, manifest_text, updated_manifest
from servetune.deploy.manifests import MODELS_DIR_IN_IMAGE
from servetune.serve.settings import ServerSettings

CHOSEN_FOLDER = "chosen"
IMAGE_PORT = 5000  # the serving image's own `servetune serve` port (Dockerfile)


@dataclass
class Chosen:
    folder: Path
    model: Path
    manifest: Path
    diff_file: Path
    diff: str
    dockerfile: Path
    image: str
    notes: list[str] = field(default_factory=list)

    def build_commands(self) -> list[str]:
        """How to build and ship the image, then apply the manifest."""
        return [f"make image   # servetune:{__version__}, the serving image without your model",
                f"docker build -t {self.image} {self.folder}",
                f"docker push {self.image}",
                f"kubectl apply -f {self.manifest}"]


def image_name(their_image: str | None, model: Path) -> str:
    """Their image's repository with the tag servetune-<model> (a valid tag: at most 128 of [A-Za-z0-9_.-])."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"servetune-{model.stem}")[:128]
    repository = "servetune-model"
    if their_image:
        last = their_image.rsplit("/", 1)[-1]
        repository = their_image.rsplit(":", 1)[0] if ":" in last else their_image
        repository = repository.split("@", 1)[0]
    return f"{repository}:{tag}"


def dockerfile_text(spec: DeploymentSpec, model_file: str, image: str) -> str:
    """servetune's serving image with the model in /models, the server told where it is (and its threads);
    a command only when the workers or the port differ from the image's own."""
    settings = ServerSettings(model_path=str(MODELS_DIR_IN_IMAGE / model_file), threads=spec.threads)
    environment = " ".join(f"{name}={value}" for name, value in settings.to_env().items())
    lines = [f"# The serving image with the chosen model: docker build -t {image} .",
             f"FROM servetune:{__version__}",
             f"COPY {model_file} {MODELS_DIR_IN_IMAGE}/",
             f"ENV {environment}"]
    if spec.workers != 1 or spec.container_port != IMAGE_PORT:
        lines.append(f'CMD ["servetune", "serve", "--host", "0.0.0.0", "--port", "{spec.container_port}", '
                     f'"--workers", "{spec.workers}"]')
    return "\n".join(lines) + "\n"


def write_chosen(out: Path, spec: DeploymentSpec, documents: list, deployment_file: Path) -> Chosen:
    """The chosen model, their manifest updated, its diff and the Dockerfile, into OUT/chosen/."""
    folder = out / CHOSEN_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / Path(spec.model).name
    shutil.copyfile(spec.model, model)
    deployments = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "Deployment"]
    containers = deployments[0]["spec"]["template"]["spec"]["containers"] if deployments else [{}]
    image = image_name(containers[0].get("image"), model)
    updated, notes = updated_manifest(documents, spec, image)
    manifest = folder / deployment_file.name
    manifest.write_text(manifest_text(updated), encoding="utf-8")
    diff = manifest_diff(documents, updated, str(deployment_file), str(manifest))
    diff_file = folder / f"{deployment_file.stem}.diff"
    diff_file.write_text(diff, encoding="utf-8")
    dockerfile = folder / "Dockerfile"
    dockerfile.write_text(dockerfile_text(spec, model.name, image), encoding="utf-8")
    return Chosen(folder, model, manifest, diff_file, diff, dockerfile, image, notes)
