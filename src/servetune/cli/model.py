"""`servetune model ...`: train, import, export, evaluate and profile models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.cli.errors import OptionError
from servetune.cli.options import (
    Classes,
    Int8MaxLoss,
    Int8MinAgreement,
    Layout,
    Mean,
    ResizeFilter,
    Softmax,
    Std,
    choice,
    comma_list,
    steps_progress,
)

model_app = typer.Typer(help="Import, train, evaluate, export, quantize and profile models.", no_args_is_help=True,
                        rich_markup_mode=None)


@model_app.command("import")
def model_import(
    source: Annotated[Path, typer.Argument(help="the model file: Keras (.keras, legacy .h5) or plain .onnx")],
    out: Annotated[Path | None, typer.Option(help="artifact path [default: SOURCE with .onnx]")] = None,
    name: Annotated[str | None, typer.Option(help="model name [default: the file's stem]")] = None,
    classes: Classes = None,
    input_size: Annotated[
        int | None,
        typer.Option(min=16, help="input side for models whose input size is not fixed [default: 224]"),
    ] = None,
    int8_data: Annotated[
        Path | None, typer.Option(help="also write the INT8 twin (-int8.onnx), calibrated on DATA/training and "
                                  "checked on DATA/evaluation")
    ] = None,
    int8_max_loss: Int8MaxLoss = 1.0,
    int8_min_agreement: Int8MinAgreement = 97.0,
    mean: Mean = "0,0,0",
    std: Std = "1,1,1",
    layout: Layout = None,
    resize_filter: ResizeFilter = "bilinear",
    softmax: Softmax = False,
) -> None:
    """Convert an image classifier into a servetune artifact: a Keras model (input HxWx3, pixels x/255,
    softmax; Keras 2 files from TensorFlow 2.x too), or a plain ONNX model with its preprocessing given.
    With --int8-data, the fp32 accuracy on DATA/evaluation is stored in the artifact, and the INT8 twin is
    written only when it passes both gates (accuracy change, top-1 agreement with fp32)."""
    from servetune.model.artifact import parse_class_names
    from servetune.model.preprocess import describe

    class_names = parse_class_names(classes) if classes is not None else None
    with steps_progress() as progress:
        importing = progress.add_task(f"import {source.name}", total=None)
        path, spec, agreement = import_model(source, out, name, class_names, input_size, mean, std, layout,
                                             resize_filter, softmax)
        progress.remove_task(importing)
    typer.echo(
        f"wrote {path}: {spec.layout} {spec.input_size}x{spec.input_size}, {len(spec.class_names)} classes, "
        f"output {spec.output}, backbone {spec.backbone}, {path.stat().st_size / 1e6:.1f} MB"
    )
    typer.echo(f"classes: {', '.join(spec.class_names)}")
    typer.echo(f"preprocessing: {describe(spec)}")
    if agreement is not None:
        typer.echo(agreement.describe("Keras"))
    if int8_data is not None:
        from servetune.model.export import int8_path
        from servetune.model.quantize import Int8LossError, quantize_checked

        try:
            with steps_progress() as progress:
                quantized, check = quantize_checked(path, int8_path(path), int8_data, int8_max_loss / 100,
                                                    int8_min_agreement / 100, progress=progress)
        except Int8LossError:
            typer.echo(f"{path}: fp32 accuracy on {int8_data / 'evaluation'} stored in the artifact")
            raise
        typer.echo(check.describe())
        typer.echo(f"{path}: fp32 accuracy {check.fp32_accuracy:.2%} ({check.split}) stored in the artifact")
        typer.echo(f"wrote {quantized}: INT8, {quantized.stat().st_size / 1e6:.1f} MB")


def import_settings(name: str | None, classes: str | None, input_size: int | None, mean: str, std: str,
                    layout: str | None, resize_filter: str, softmax: bool):
    """The import flags, checked, as model.variants.ImportSettings (for `tune --model`)."""
    from servetune.model.artifact import parse_class_names
    from servetune.model.onnx_import import parse_channel_values
    from servetune.model.variants import ImportSettings

    return ImportSettings(
        name=name, class_names=parse_class_names(classes) if classes is not None else None, input_size=input_size,
        mean=parse_channel_values("--mean", mean), std=parse_channel_values("--std", std, positive=True),
        layout=choice(layout.upper(), ["NCHW", "NHWC"], "--layout") if layout else None,
        interpolation=choice(resize_filter, ["bilinear", "bicubic"], "--resize-filter"),
        output="probabilities" if softmax else "logits")


def import_model(source: Path, out: Path | None, name: str | None, class_names: list[str] | None,
                 input_size: int | None, mean: str, std: str, layout: str | None, resize_filter: str,
                 softmax: bool):
    """(artifact path, spec, agreement with Keras or None) for a Keras or plain ONNX source."""
    agreement = None
    if source.suffix.lower() == ".onnx":
        from servetune.model.onnx_import import import_onnx_model, parse_channel_values

        path, spec = import_onnx_model(
            source, out if out is not None else source.with_name(f"{source.stem}-servetune.onnx"), name=name,
            class_names=class_names, input_size=input_size, mean=parse_channel_values("--mean", mean),
            std=parse_channel_values("--std", std, positive=True),
            layout=choice(layout.upper(), ["NCHW", "NHWC"], "--layout") if layout else None,
            interpolation=choice(resize_filter, ["bilinear", "bicubic"], "--resize-filter"),
            output="probabilities" if softmax else "logits",
        )
    else:
        from servetune.model.keras_import import import_keras_model

        path, spec, agreement = import_keras_model(source, out, name, class_names, input_size)
    return path, spec, agreement


@model_app.command("resize")
def model_resize(
    model: Annotated[Path, typer.Argument(help="artifact (.onnx) of a network with global pooling")],
    input_size: Annotated[int, typer.Option(min=16, max=1024, help="the new input side in pixels")],
    out: Annotated[Path | None, typer.Option(help="artifact path [default: MODEL with -SIZE]")] = None,
    data: Annotated[Path | None, typer.Option(help="Food-11 folder: measure the accuracy at the new size on "
                                              "its evaluation split and store it")] = None,
) -> None:
    """Serve the same weights at another input size (e.g. 224 -> 160: about half the work per photo): the
    graph re-shaped, the preprocessing resized to match; a network that cannot take another size (no global
    pooling: Flatten + Dense) is refused with the reason."""
    from servetune.model.artifact import existing_model_path, record_accuracy
    from servetune.model.resize import resize_artifact

    source = existing_model_path(model)
    target = out if out is not None else source.with_name(f"{source.stem}-{input_size}.onnx")
    path, spec = resize_artifact(source, input_size, target)
    typer.echo(f"wrote {path}: input {spec.input_size}x{spec.input_size}, resize {spec.resize}, crop {spec.crop}, "
               f"{path.stat().st_size / 1e6:.1f} MB")
    if data is not None:
        from servetune.model.evaluate import evaluate

        with steps_progress() as progress:
            result = evaluate(path, data, "evaluation", progress=progress)
        record_accuracy(path, "evaluation", round(result.accuracy, 4))
        typer.echo(f"accuracy at {input_size} px on {result.count} evaluation images: {result.accuracy:.2%} "
                   "(stored in the artifact)")


@model_app.command("train")
def model_train(
    data: Annotated[Path, typer.Option(help="Food-11 folder with training/ and validation/ (any layout)")],
    out: Annotated[Path, typer.Option(help="folder for checkpoint.pt, model.pt and train_summary.json")],
    extra: Annotated[
        list[Path] | None,
        typer.Option(metavar="FOLDER",
                     help="another folder of training images, any layout, may lack classes (repeatable)"),
    ] = None,
    balance: Annotated[bool, typer.Option(help="weight the loss so that every class counts the same")] = False,
    backbone: Annotated[str, typer.Option(help="lite0, lite1 or lite2")] = "lite0",
    input_size: Annotated[int, typer.Option(min=32, max=512, help="network input side in pixels")] = 160,
    views: Annotated[int, typer.Option(min=1, help="augmented copies of each training image")] = 3,
    augment_every_epoch: Annotated[
        bool, typer.Option(help="stage 2 makes a fresh augmented view of each image every epoch (slower, less overfitting)")
    ] = False,
    finetune_blocks: Annotated[int, typer.Option(min=1, help="top blocks fine-tuned in stage 2")] = 3,
    head_epochs: Annotated[int, typer.Option(min=1)] = 30,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="0: train the head only")] = 6,
    patience: Annotated[int, typer.Option(min=1, help="epochs without validation gain before stopping")] = 3,
    head_lr: Annotated[float, typer.Option(min=1e-6, max=1.0, help="stage 1 learning rate (AdamW, cosine)")] = 2e-3,
    finetune_lr: Annotated[float, typer.Option(min=1e-6, max=1.0, help="stage 2 learning rate (AdamW, cosine)")] = 3e-4,
    mixup: Annotated[float, typer.Option(min=0.0, max=10.0, help="stage 2 mixup alpha (0: off; 0.2-0.4 typical)")] = 0.0,
    per_class: Annotated[
        int | None, typer.Option(min=1, help="use only the first N training images per class (DATA's own first)")
    ] = None,
    seed: int = 0,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads [default: all cores]")] = None,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoint.pt")] = False,
    init_from: Annotated[
        Path | None, typer.Option(metavar="MODEL_PT", help="train a model.pt further instead of starting from "
                                  "ImageNet's weights (same backbone and classes)")
    ] = None,
    augment_workers: Annotated[
        int | None, typer.Option(min=0, help="processes that augment stage 2's batches with "
                                 "--augment-every-epoch [default: all cores but one on a GPU, 0 on a CPU]")
    ] = None,
    data_description: Annotated[str, typer.Option(help="what the data is, stored in the model card")] = "",
) -> None:
    """Fine-tune EfficientNet-Lite on Food-11 (head on cached features, then the top blocks)."""
    from servetune.model.train import TrainConfig, train

    config = TrainConfig(
        data=data, out=out, extra=list(extra or []), balance=balance, backbone=backbone, input_size=input_size, views=views, augment_every_epoch=augment_every_epoch,
        finetune_blocks=finetune_blocks,
        head_epochs=head_epochs, finetune_epochs=finetune_epochs, patience=patience, head_lr=head_lr,
        finetune_lr=finetune_lr, mixup=mixup, per_class=per_class,
        seed=seed, threads=threads, resume=resume, init_from=init_from, augment_workers=augment_workers,
        data_description=data_description,
    )
    path = train(config)
    typer.echo(f"wrote {path} (next: servetune model export {path} --data {data})")


@model_app.command("export")
def model_export(
    trained: Annotated[Path, typer.Argument(help="model.pt written by `servetune model train`")],
    out: Annotated[Path, typer.Option(help="fp32 artifact path (.onnx); the INT8 twin gets -int8.onnx")],
    data: Annotated[Path | None, typer.Option(help="Food-11 folder: calibration (training) and evaluation")] = None,
    int8: Annotated[bool, typer.Option(help="also write the INT8 (QDQ, per-channel) artifact")] = True,
    calibration_images: Annotated[int, typer.Option(min=1)] = 256,
    int8_weights: Annotated[
        str, typer.Option(help="u8 (exact on every CPU), s8-reduced (7-bit: faster, less exact) or s8 (full "
                          "range: overflows on x86-64 CPUs without VNNI)")
    ] = "u8",
    per_class: Annotated[int | None, typer.Option(min=1, help="evaluate on N images per class only")] = None,
    input_size: Annotated[
        int | None,
        typer.Option(min=32, max=512, help="serve the weights at this input side [default: the trained one]"),
    ] = None,
) -> None:
    """Export to ONNX (fp32, opset 17) and INT8; with --data, measure both on the evaluation split."""
    from servetune.model.export import export_and_quantize

    if int8 and data is None:
        raise OptionError("INT8 calibration needs training images: pass --data FOLDER (or --no-int8)")
    from servetune.model.quantize import WEIGHT_SCHEMES

    weights = choice(int8_weights, list(WEIGHT_SCHEMES), "--int8-weights")
    results = export_and_quantize(trained, out, data, int8, calibration_images, per_class, input_size=input_size,
                                  int8_weights=weights)
    for path, accuracy in results.items():
        measured = f", evaluation accuracy {accuracy:.2%}" if accuracy is not None else ""
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{measured})")
    if len(results) == 2 and None not in results.values():
        fp32, quantized = results.values()
        typer.echo(f"INT8 vs fp32: {100 * (quantized - fp32):+.2f} pp")


@model_app.command("unsigned-weights")
def model_unsigned_weights(
    model: Annotated[Path, typer.Argument(help="INT8 artifact (.onnx) with signed 8-bit weights")],
    out: Annotated[Path, typer.Option(help="where to write the rewritten artifact")],
) -> None:
    """Rewrite signed 8-bit weights as unsigned with identical values (accurate on CPUs without VNNI);
    measure the result again (`model eval --record`) before trusting its metadata."""
    from servetune.model.quantize import unsigned_weights

    path, count = unsigned_weights(model, out)
    typer.echo(f"wrote {path}: {count} weight tensors rewritten as unsigned 8-bit, {path.stat().st_size / 1e6:.1f} MB")


@model_app.command("eval")
def model_eval(
    model: Annotated[Path | None, typer.Argument(help="artifact (.onnx) [default: the packaged model]")] = None,
    data: Annotated[Path, typer.Option(help="Food-11 folder (any layout)")] = Path("Food-11"),
    split: Annotated[str, typer.Option(help="training, validation or evaluation")] = "evaluation",
    per_class: Annotated[int | None, typer.Option(min=1, help="only the first N images of each class")] = None,
    out: Annotated[Path | None, typer.Option(help="write metrics.json, confusion.csv, confusion.png here")] = None,
    via_http: Annotated[str | None, typer.Option(help="evaluate through a running server's POST /predict")] = None,
    threads: Annotated[int | None, typer.Option(min=1)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print a machine-readable summary")] = False,
    record: Annotated[
        str | None,
        typer.Option(help="store the accuracy in the artifact's metadata under this name (e.g. food101-fullres)"),
    ] = None,
) -> None:
    """Accuracy, top-3, per-class accuracy, confusion matrix and calibration error on one split."""
    import json

    from rich.progress import Progress

    from servetune.model.artifact import existing_model_path, record_accuracy
    from servetune.model.evaluate import evaluate, write_outputs

    if record is not None and (via_http or model is None):
        raise OptionError("--record stores the accuracy in an artifact file: give MODEL (not --via-http)")
    model_path = None if via_http else existing_model_path(model)
    with Progress(transient=True, disable=json_output) as progress:
        result = evaluate(model_path, data, split, per_class, via_http, threads, progress)
    if out is not None:
        write_outputs(result, out)
    if record is not None:
        record_accuracy(model_path, record, round(result.accuracy, 4))
    if json_output:
        summary = result.summary()
        summary.pop("skipped")
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{result.model} on {split}: {result.count} images, accuracy {result.accuracy:.2%}, "
               f"top-3 {result.top3_accuracy:.2%}, calibration error {result.calibration_error:.3f}")
    for name, accuracy in result.per_class_accuracy.items():
        typer.echo(f"  {name:<16} {accuracy:.2%}")
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} unreadable images, e.g. {result.skipped[0][0]}: {result.skipped[0][1]}")


@model_app.command("profile")
def model_profile(
    data: Annotated[Path, typer.Option(help="Food-11 folder: quick training and the accuracy column")],
    out: Annotated[Path, typer.Option(help="folder for variants.csv, variants.json and the models")],
    backbones: Annotated[str, typer.Option(help="comma-separated: lite0,lite1,lite2")] = "lite0",
    sizes: Annotated[str, typer.Option(help="comma-separated input sides")] = "128,160",
    precisions: Annotated[str, typer.Option(help="fp32,int8")] = "fp32,int8",
    artifact: Annotated[list[Path] | None, typer.Option(help="also profile this artifact as it is (repeatable)")] = None,
    train_per_class: Annotated[int, typer.Option(min=1, help="images per class for the quick variants")] = 200,
    eval_per_class: Annotated[int, typer.Option(min=1, help="evaluation images per class (speed)")] = 40,
    runs: Annotated[int, typer.Option(min=5, help="timed inferences per thread count")] = 40,
    record: Annotated[
        bool, typer.Option(help="store each --artifact's latency, peak RSS and size (with this machine and the "
                           "date) in its metadata")
    ] = False,
) -> None:
    """Variant table: backbone x input size x precision -> accuracy, size, latency (1 and 2 threads), RSS."""
    from servetune.serve.variant_profile import profile_variants

    try:
        input_sizes = [int(size) for size in comma_list(sizes)]
    except ValueError as err:
        raise OptionError(f"--sizes {sizes!r}: {err}") from None
    rows = profile_variants(
        data, out, comma_list(backbones), input_sizes, comma_list(precisions), list(artifact or []),
        train_per_class, eval_per_class, runs, record,
    )
    typer.echo(f"wrote {out / 'variants.csv'} and {out / 'variants.json'} ({len(rows)} variants)")
