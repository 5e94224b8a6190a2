"""`mapscope activations`, `mapscope compare`, `mapscope oip`: looking inside a trained network
(CNN or MLP run)."""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import NetworkChoice, network_options, out_folder, out_image, wrote
from mapscope.inspect.oip.settings import DEFAULT_STEPS


@network_options()
def activations(
    layer: list[str] = typer.Option(
        ...,
        "--layer",
        help="Layer name, e.g. Conv2D_1 (see `mapscope cnn summary`); repeat it or give a "
        "comma-separated list for several layers in one pass (then --out is a folder).",
    ),
    index: list[int] = typer.Option(..., "--index", help="Image index in the split; repeatable."),
    out: Path = typer.Option(
        ..., help="PNG file to write (a folder for several layers: one LAYER.png each)."
    ),
    split: str = typer.Option("test", help="train or test."),
    cmap: str = typer.Option(
        "viridis", help="Matplotlib colormap: viridis (perceptually uniform), magma, jet, ..."
    ),
    standardize: bool = typer.Option(
        False, help="Scale each map to mean 128, std 64 (clipped 0..255)."
    ),
    per_row: int = typer.Option(8, help="Maps per row."),
    network: NetworkChoice = None,
) -> None:
    """The input image and a grid of every map (or node) of a layer, per image."""
    import matplotlib

    from mapscope.errors import ConfigError
    from mapscope.inspect.taps import layer_outputs
    from mapscope.report.activations import plot_activation_grid
    from mapscope.report.figures import save_figure

    if cmap not in matplotlib.colormaps:
        raise ConfigError(
            f"colormap {cmap!r} unknown; try jet, magma, viridis, gray or another matplotlib name."
        )
    if per_row < 1:
        raise ConfigError(f"--per-row must be >= 1, got {per_row}.")
    layers = list(dict.fromkeys(n.strip() for item in layer for n in item.split(",") if n.strip()))
    if not layers:
        raise ConfigError("--layer is empty; give a layer name like Conv2D_1.")
    if len(layers) == 1:
        paths = {layers[0]: out_image(out)}
    else:
        paths = {name: out_folder(out) / f"{name}.png" for name in layers}
    inspection = network.inspection()
    outputs = layer_outputs(inspection.net, inspection.inputs(split, index), layers)  # one pass
    raw, titles = inspection.bundle.raw(split, index), inspection.titles(split, index)
    for name, path in paths.items():
        fig = plot_activation_grid(raw, outputs[name], titles, name, cmap, standardize, per_row)
        wrote(save_figure(fig, path))


@network_options()
def compare(
    layer: str = typer.Option(..., help="Layer name, e.g. Conv2D_3."),
    out: Path = typer.Option(..., help="Folder for the comparison files.", callback=out_folder),
    indices: str = typer.Option(
        None, help="Group A: comma-separated test indices, e.g. 1816,1270,1302."
    ),
    vs: str = typer.Option(None, help="Group B: comma-separated indices to compare against."),
    classes: str = typer.Option(None, help="Two classes to separate, e.g. 4,9 (class indices)."),
    split: str = typer.Option("test", help="train or test."),
    threshold: float = typer.Option(0.0, help="A point counts as active above this value."),
    top: int = typer.Option(16, help="How many top units to draw in class mode."),
    network: NetworkChoice = None,
) -> None:
    """Agreement of activation patterns inside image groups, or what separates two classes."""
    from mapscope.cli.common import parse_ints
    from mapscope.errors import ConfigError
    from mapscope.workflows.compare import compare_classes, compare_groups, write_comparison

    if (indices is None) == (classes is None):
        raise ConfigError("give either --indices (with optional --vs) or --classes A,B.")
    inspection = network.inspection()
    if indices is not None:
        group_a = parse_ints(indices, "--indices")
        group_b = parse_ints(vs, "--vs") if vs else None
        if not group_a or (vs is not None and not group_b):
            raise ConfigError("--indices and --vs need at least one index each, like 1816,1270.")
        result = compare_groups(inspection, layer, split, group_a, group_b, threshold)
    else:
        pair = [c.strip() for c in classes.split(",") if c.strip()]
        if len(pair) != 2:
            raise ConfigError(
                f"--classes needs exactly two classes like 4,9 or Shirt,T-shirt/top; got {classes!r}."
            )
        result = compare_classes(inspection, layer, split, pair[0], pair[1], top)
    written = write_comparison(result, out)
    typer.echo(result.summary())
    wrote(*written)


@network_options()
def oip(
    layer: str = typer.Option(..., help="Conv, pool or dense layer, e.g. Conv2D_3."),
    out: Path = typer.Option(
        ..., help="Folder for oips.png, oips.npz, oip.json.", callback=out_folder
    ),
    maps: str = typer.Option("all", help="all, or comma-separated map (dense: node) numbers."),
    node: str = typer.Option(
        None, help="Maximise one node R,C of each map instead of the map mean."
    ),
    steps: int = typer.Option(DEFAULT_STEPS, help="Most ascent steps."),
    epsilon: float = typer.Option(0.01, help="Step size along the RMS-normalised gradient."),
    scales: str = typer.Option("3,7,14,28", help="Grid sizes of the start noise."),
    factors: str = typer.Option("0.5,0.5,0.5,0.5", help="Amplitude factor per scale."),
    start_level: float = typer.Option(
        1.0, help="Spread of the start noise (1: the usual; 0.1: faint, the pattern dominates)."
    ),
    smooth: float = typer.Option(
        0.0, help="Blur every step's gradient by a Gaussian of this many pixels (0: none)."
    ),
    strategy: str = typer.Option("plain", help="plain, precursor or coarse-to-fine."),
    precursors: int = typer.Option(16, help="Start images tried per map (precursor strategy)."),
    retries: int = typer.Option(5, help="Fresh starts for a map that does not react at all."),
    tol: float = typer.Option(
        1e-3, help="Stop a map when its relative gain over --patience steps is below this."
    ),
    patience: int = typer.Option(20),
    seed: int = typer.Option(0),
    snapshots: str = typer.Option(None, help="Maps whose evolution to draw, e.g. 0,5,7."),
    device: str = typer.Option("auto", help="auto (a GPU when torch sees one), cpu or cuda."),
    network: NetworkChoice = None,
) -> None:
    """OIPs: images grown from multi-scale noise that drive each map (or node) as hard as possible."""
    from mapscope.cli.common import parse_floats, parse_ints
    from mapscope.errors import ConfigError
    from mapscope.inspect.oip.settings import OIPSettings
    from mapscope.workflows.oip import oip_layer, write_oips

    units = None if maps == "all" else parse_ints(maps, "--maps")
    if units is not None and not units:
        raise ConfigError(f"--maps needs map numbers like 0,5,7 or 'all'; got {maps!r}.")
    node_rc = None
    if node:
        node_rc = tuple(parse_ints(node, "--node"))
        if len(node_rc) != 2:
            raise ConfigError(f"--node needs row,column like 1,1; got {node!r}.")
    settings = OIPSettings(
        strategy=strategy,
        steps=steps,
        epsilon=epsilon,
        scales=tuple(parse_ints(scales, "--scales")),
        factors=tuple(parse_floats(factors, "--factors")),
        start_level=start_level,
        smooth=smooth,
        seed=seed,
        retries=retries,
        precursors=precursors,
        tol=tol,
        patience=patience,
        device=device,
    ).validate()  # before the network and its data are loaded: a typo costs nothing
    inspection = network.inspection()
    snapshot_units = parse_ints(snapshots, "--snapshots") if snapshots else None
    result = oip_layer(inspection, layer, units, node_rc, snapshot_units, settings)
    written = write_oips(result, out)
    typer.echo(result.summary())
    wrote(*written)


@network_options()
def summary(
    network: NetworkChoice = None,
) -> None:
    """Every layer of a network (a run, or your own module) in the order it runs: output shape,
    parameters, receptive field and effective stride."""
    from mapscope.errors import ConfigError
    from mapscope.inspect.summary import format_module_summary

    inspection = network.inspection()
    if not inspection.bundle.dataset.is_image:
        raise ConfigError(
            "summary shows maps and receptive fields of image networks; this "
            "run reads table rows (WIFI)."
        )
    typer.echo(format_module_summary(inspection.net, inspection.bundle.dataset.image_shape))
