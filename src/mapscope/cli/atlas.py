"""`mapscope atlas` (a static website of a trained model) and `mapscope attribute`
(which pixels a prediction depends on)."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import NetworkChoice, network_options, out_folder, out_image, wrote

METHOD_NAMES = "saliency, ig (integrated gradients), gradcam, occlusion"


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


@network_options()
def atlas(
    out: Path = typer.Option(..., help="Folder for the site (new, empty, or an earlier atlas)."),
    layers: str = typer.Option(
        None, help="Comma-separated layers (default: every layer but Flatten)."
    ),
    examples: int = typer.Option(9, help="Top images shown per unit."),
    split: str = typer.Option("test", help="train or test: the images statistics run over."),
    images: str = typer.Option(
        None, help="Extra images with a page of their own, e.g. 1302,1816 (split indices)."
    ),
    confused: int = typer.Option(20, help="Image pages for the most frequent confusions."),
    oip_steps: int = typer.Option(300, help="Most ascent steps of each layer's OIP search."),
    methods: str = typer.Option(
        "saliency,ig,gradcam,occlusion", help=f"Attribution methods: {METHOD_NAMES}."
    ),
    seed: int = typer.Option(0, help="Seed of the OIP start noise."),
    device: str = typer.Option("auto", help="auto (a GPU when torch sees one), cpu or cuda."),
    network: NetworkChoice = None,
) -> None:
    """A browsable, offline website of the model: a page per layer, unit, class and chosen
    image (open index.html in any browser)."""
    from mapscope.atlas import build_atlas, write_atlas
    from mapscope.atlas.build import cache_folder
    from mapscope.atlas.site import check_site_folder
    from mapscope.cli.common import parse_ints
    from mapscope.inspect.attribution import check_methods
    from mapscope.runs.lock import locked

    out = check_site_folder(out_folder(out))
    method_list = check_methods(_names(methods) or [])
    chosen = parse_ints(images, "--images") if images else []
    network.check()
    if network.model is not None:
        from mapscope.runs import Run

        source = Run.open(network.model)  # the atlas reads its history and weight files too
    else:
        source = network.inspection()
    with locked(out):  # one writer per site: a second atlas into the same folder is refused
        result = build_atlas(
            source,
            layers=_names(layers),
            examples=examples,
            split=split,
            images=chosen,
            confused=confused,
            oip_steps=oip_steps,
            methods=method_list,
            seed=seed,
            device=device,
            data_root=network.data_dir,
            cache_dir=cache_folder(out),
        )
        site = write_atlas(result, out)
    typer.echo(result.summary_text())
    typer.echo(
        f"site: {site['files']} files, {site['bytes'] / 1e6:.1f} MB, rendered in "
        f"{site['seconds']:.1f} s"
    )
    wrote(site["index"])


@network_options()
def attribute(
    index: list[int] = typer.Option(..., "--index", help="Image index in the split; repeatable."),
    out: Path = typer.Option(..., help="PNG file: one row per image, one column per method."),
    method: str = typer.Option(
        "saliency,ig,gradcam,occlusion", help=f"Comma-separated methods: {METHOD_NAMES}."
    ),
    target: int = typer.Option(
        None, help="Class whose score to explain (default: each image's predicted class)."
    ),
    layer: str = typer.Option(None, help="Grad-CAM's layer (default: the last map layer)."),
    split: str = typer.Option("test", help="train or test."),
    network: NetworkChoice = None,
) -> None:
    """Which pixels a prediction depends on, by saliency, integrated gradients, Grad-CAM and
    occlusion (computed with Captum)."""
    from mapscope.inspect.attribution import check_methods
    from mapscope.inspect.taps import check_layer
    from mapscope.workflows.attribute import attribute_images, write_attributions

    out = out_image(out)
    methods = check_methods(_names(method) or [])
    inspection = network.inspection()
    if layer is not None:
        check_layer(inspection.net, layer)
    result = attribute_images(inspection, index, methods, split, target, layer)
    written = write_attributions(result, out)
    typer.echo(result.summary())
    wrote(*written)
