"""`mapscope kmeans ...` and `mapscope pca`: clustering as classifier, analysis and features.

Each command parses its options, calls the computation in ``mapscope.cluster``, writes the
result and prints its summary.
"""

from __future__ import annotations

from pathlib import Path

import typer

from mapscope.cli.common import DATA_DIR, out_folder, parse_ints, wrote
from mapscope.errors import ConfigError
from mapscope.runs.folder import check_new_run

app = typer.Typer(
    help="KMeans as a classifier, k analysis and cluster-distance features.", no_args_is_help=True
)


@app.command()
def classify(
    out: Path = typer.Option(..., help="Folder for tables and pictures.", callback=out_folder),
    dataset: str = typer.Option("wifi", help="wifi, mnist or fashion-mnist."),
    clusters: str = typer.Option("4,5,6,7,8,9,10,11,25", help="Numbers of clusters to try."),
    mode: str = typer.Option(
        "all", help="all: fit and predict all samples (original study); split: held-out test."
    ),
    test_size: int = typer.Option(500, help="Test samples in split mode (WIFI)."),
    repeats: int = typer.Option(1, help="Different splits to average over (mean and spread)."),
    pca: int = typer.Option(None, help="Cluster on the first N principal components."),
    mapping: str = typer.Option("majority", help="majority or hungarian (one-to-one)."),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Error of the KMeans classifier against the number of clusters, beside RandomForest and KNN."""
    from mapscope.cluster.classify import classify_sweep, write_classify

    result = classify_sweep(
        dataset,
        parse_ints(clusters, "--clusters"),
        mode,
        test_size,
        repeats,
        pca,
        seed,
        mapping,
        data_root=data_dir,
    )
    written = write_classify(result, out)
    typer.echo(result.summary())
    wrote(*written)


@app.command()
def analyze(
    out: Path = typer.Option(..., help="Folder for the table and plot.", callback=out_folder),
    dataset: str = typer.Option("wifi", help="wifi, mnist or fashion-mnist."),
    k: str = typer.Option("2..12", help="Range like 2..12 or a list 2,4,8."),
    silhouette_sample: int = typer.Option(
        5000, help="Samples for the silhouette (exact is quadratic)."
    ),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Inertia (elbow), average silhouette and fit time against k; a suggested k."""
    from mapscope.cluster.analysis import analyze as analyze_dataset
    from mapscope.cluster.analysis import write_analysis

    result = analyze_dataset(dataset, parse_ints(k, "--k"), seed, silhouette_sample, data_dir)
    written = write_analysis(result, out)
    typer.echo(result.summary())
    wrote(*written)


@app.command()
def fit(
    out: Path = typer.Option(..., help="Run folder to create (usable with `mapscope evaluate`)."),
    dataset: str = typer.Option("mnist", help="wifi, mnist or fashion-mnist."),
    clusters: int = typer.Option(100),
    mapping: str = typer.Option("majority"),
    pca: int = typer.Option(None),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, help="Replace the run already in --out."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Fit one KMeans classifier on the training part and save it as a run."""
    from mapscope.cluster.saved import fit_run, write_run

    check_new_run(out, overwrite)  # refuse before fitting, not after
    result = fit_run(dataset, clusters, mapping, pca, seed, data_dir)
    written = write_run(result, out, overwrite)
    typer.echo(result.summary())
    wrote(*written)


@app.command()
def features(
    out: Path = typer.Option(..., help="Folder for the sweep table and plot.", callback=out_folder),
    k: str = typer.Option("10..170/10", help="Numbers of clusters K."),
    dataset: str = typer.Option("mnist", help="mnist or fashion-mnist."),
    train_mlp: bool = typer.Option(
        False, help="Also train the MLP on each K and on the 784 pixels."
    ),
    mlp_epochs: int = typer.Option(40, help="Epochs of each MLP run with --train-mlp."),
    silhouette_sample: int = typer.Option(5000),
    seed: int = typer.Option(0),
    max_train: int = typer.Option(
        None, help="Cluster and train on the first N training images only (quick experiments)."
    ),
    overwrite: bool = typer.Option(False, help="Replace MLP runs of an earlier sweep in --out."),
    data_dir: Path = DATA_DIR,
) -> None:
    """Sweep K for cluster-distance features: inertia, silhouette, time; optionally MLP accuracy."""
    from mapscope.workflows.feature_sweep import feature_sweep, write_feature_sweep

    result = feature_sweep(
        parse_ints(k, "--k"),
        dataset,
        silhouette_sample,
        seed,
        train_mlp_into=out if train_mlp else None,
        mlp_epochs=mlp_epochs,
        data_root=data_dir,
        overwrite=overwrite,
        max_train=max_train,
    )
    written = write_feature_sweep(result, out)
    typer.echo(result.summary())
    wrote(*written, *result.mlp_runs)


def pca(
    out: Path = typer.Option(
        ..., help="Folder for the PCA pictures and numbers.", callback=out_folder
    ),
    dataset: str = typer.Option("wifi", help="wifi, mnist or fashion-mnist."),
    clusters: int = typer.Option(
        None, help="KMeans clusters for the colouring (default: number of classes)."
    ),
    pairs: str = typer.Option(
        "0-4,0-3", help="Feature pairs to scatter, e.g. 0-4 for WLAN-0 vs WLAN-4."
    ),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Explained variance, loadings and scatter plots coloured by label, cluster and both."""
    from mapscope.cluster.pca import pca_study, write_pca

    try:
        pair_list = [tuple(int(v) for v in p.split("-")) for p in pairs.split(",") if p]
    except ValueError as exc:
        raise ConfigError(f"--pairs must look like 0-4,0-3; got {pairs!r}.") from exc
    if any(len(p) != 2 for p in pair_list):
        raise ConfigError(f"--pairs must be feature pairs like 0-4,0-3; got {pairs!r}.")
    result = pca_study(dataset, clusters, pair_list, seed, data_dir)
    written = write_pca(result, out)
    typer.echo(result.summary())
    wrote(*written)
