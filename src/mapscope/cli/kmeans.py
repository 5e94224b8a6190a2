"""`mapscope kmeans ...` and `mapscope pca`: clustering as classifier, analysis and features."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from mapscope.cli.common import DATA_DIR, parse_ints, parse_range, wrote
from mapscope.cluster.inputs import clustering_bundle
from mapscope.io import write_csv, write_json
from mapscope.report.figures import save_figure
from mapscope.runs import provenance

app = typer.Typer(
    help="KMeans as a classifier, k analysis and cluster-distance features.", no_args_is_help=True
)


@app.command()
def classify(
    out: Path = typer.Option(..., help="Folder for tables and pictures."),
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
    from mapscope.cluster.classify import classify_sweep
    from mapscope.report.cluster import plot_confusions, plot_error_vs_clusters, plot_prototypes

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
    saved = {k: v for k, v in result.items() if k not in ("models", "bundle")}
    saved["provenance"] = provenance(result["bundle"].dataset.checksums)
    written = [
        write_json(out / "classify.json", saved),
        write_csv(
            out / "classify.csv",
            ["clusters", "wrong", "error", "error_std", "mean_purity"],
            [
                [r["clusters"], r["wrong"], r["error"], r["error_std"], r["mean_purity"]]
                for r in result["table"]
            ],
        ),
        save_figure(plot_error_vs_clusters(result), out / "error_vs_clusters.png"),
    ]
    for k, fig in plot_confusions(result):
        written.append(save_figure(fig, out / f"confusion_k{k}.png"))
    if dataset != "wifi" and not pca:
        for k, model in result["models"].items():
            written.append(
                save_figure(
                    plot_prototypes(
                        model.centroids_,
                        model.cluster_labels_,
                        model.purity_,
                        result["class_names"],
                    ),
                    out / f"prototypes_k{k}.png",
                )
            )
    typer.echo(f"{dataset}, {mode} mode ({result['repeats']} repeat(s)), {result['seconds']:.1f} s")
    typer.echo(f"{'clusters':>8} {'wrong':>7} {'error':>8} {'+-':>7} {'purity':>7}")
    for r in result["table"]:
        typer.echo(
            f"{r['clusters']:>8} {r['wrong']:>7} {r['error']:>8.4f} {r['error_std']:>7.4f} "
            f"{r['mean_purity']:>7.3f}"
        )
    for name, values in result["comparison"].items():
        typer.echo(
            f"{name:>16}: error {values['error']:.4f} +- {values['error_std']:.4f} (held-out)"
        )
    wrote(*written)


@app.command()
def analyze(
    out: Path = typer.Option(..., help="Folder for the table and plot."),
    dataset: str = typer.Option("wifi", help="wifi, mnist or fashion-mnist."),
    k: str = typer.Option("2..12", help="Range like 2..12 or a list 2,4,8."),
    silhouette_sample: int = typer.Option(
        5000, help="Samples for the silhouette (exact is quadratic)."
    ),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Inertia (elbow), average silhouette and fit time against k; a suggested k."""
    from mapscope.cluster.analysis import analyze_k, suggest_k
    from mapscope.report.cluster import plot_k_analysis

    bundle = clustering_bundle(dataset, seed, data_root=data_dir)
    x = bundle.inputs("train")
    rows = analyze_k(x, parse_range(k, "--k"), seed, silhouette_sample=silhouette_sample)
    suggestion = suggest_k(rows)
    written = [
        write_json(
            out / "analyze.json",
            {
                "dataset": dataset,
                "samples": len(x),
                "rows": rows,
                "suggested_k": suggestion,
                "provenance": provenance(bundle.dataset.checksums, seed=seed, k=k),
            },
        ),
        write_csv(out / "analyze.csv", list(rows[0]), [list(r.values()) for r in rows]),
        save_figure(
            plot_k_analysis(rows, suggestion, f"{dataset}: {len(x)} samples"), out / "analyze.png"
        ),
    ]
    for r in rows:
        typer.echo(
            f"k={r['k']:>3}  inertia {r['inertia']:.4g}  silhouette {r['silhouette']:.4f}  "
            f"{r['fit_seconds']:.2f} s"
        )
    typer.echo(
        f"suggested k: {suggestion['silhouette']} (best silhouette), {suggestion['elbow']} (elbow)"
    )
    wrote(*written)


@app.command()
def fit(
    out: Path = typer.Option(..., help="Run folder to create (usable with `mapscope evaluate`)."),
    dataset: str = typer.Option("mnist", help="wifi, mnist or fashion-mnist."),
    clusters: int = typer.Option(100),
    mapping: str = typer.Option("majority"),
    pca: int = typer.Option(None),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Fit one KMeans classifier on the training part and save it as a run."""
    from mapscope.cluster.kmeans_classifier import KMeansClassifier
    from mapscope.runs import create_run, write_metrics

    image = dataset != "wifi"
    bundle = clustering_bundle(dataset, seed, data_root=data_dir)
    began = time.perf_counter()
    model = KMeansClassifier(
        clusters, mapping, minibatch=image, n_init=3 if image else 10, pca=pca, seed=seed
    )
    model.fit(bundle.inputs("train"), bundle.labels("train"))
    seconds = time.perf_counter() - began
    run = create_run(
        out,
        {
            "kind": "kmeans",
            "model": {"clusters": clusters, "mapping": mapping, "pca": pca},
            "data": bundle.config(),
            "seed": seed,
        },
    )
    bundle.save(run)
    model.save(run / "model.npz")
    accuracy = float((model.predict(bundle.inputs("test")) == bundle.labels("test")).mean())
    write_metrics(
        run,
        {
            "test_accuracy": accuracy,
            "train_seconds": seconds,
            "seed": seed,
            "data_checksums": bundle.dataset.checksums,
        },
    )
    typer.echo(f"{clusters} clusters: test accuracy {accuracy:.4f} ({seconds:.1f} s)")
    wrote(run / "model.npz", run / "config.json", run / "metrics.json")


@app.command()
def features(
    out: Path = typer.Option(..., help="Folder for the sweep table and plot."),
    k: str = typer.Option("10..170/10", help="Numbers of clusters K."),
    dataset: str = typer.Option("mnist", help="mnist or fashion-mnist."),
    train_mlp: bool = typer.Option(
        False, help="Also train the MLP on each K and on the 784 pixels."
    ),
    mlp_epochs: int = typer.Option(40, help="Epochs of each MLP run with --train-mlp."),
    silhouette_sample: int = typer.Option(5000),
    seed: int = typer.Option(0),
    data_dir: Path = DATA_DIR,
) -> None:
    """Sweep K for cluster-distance features: inertia, silhouette, time; optionally MLP accuracy."""
    from sklearn.metrics import silhouette_score

    from mapscope.cluster.features import ClusterDistances
    from mapscope.mlp.train import MLPConfig, train
    from mapscope.report.cluster import plot_feature_sweep

    bundle = clustering_bundle(dataset, seed, data_root=data_dir)
    x = bundle.inputs("train")
    rows = []
    began = time.perf_counter()
    for n_clusters in parse_range(k, "--k"):
        t0 = time.perf_counter()
        model = ClusterDistances(n_clusters, seed=seed).fit(x)
        fit_seconds = time.perf_counter() - t0
        sample = np.random.default_rng(seed).choice(len(x), silhouette_sample, replace=False)
        silhouette = (
            float(silhouette_score(x[sample], model.clusters(x[sample])))
            if n_clusters > 1
            else float("nan")
        )
        row = {
            "k": n_clusters,
            "inertia": model.inertia_,
            "silhouette": silhouette,
            "fit_seconds": fit_seconds,
        }
        if train_mlp:
            metrics = train(
                out / f"mlp_k{n_clusters}",
                MLPConfig(dataset, epochs=mlp_epochs, cluster_features=n_clusters, seed=seed),
                data_dir,
            )
            row.update(
                test_accuracy=metrics["test_accuracy"],
                mlp_seconds=metrics["train_seconds"],
                mlp_seconds_to_95=metrics["seconds_to_95"],
            )
        rows.append(row)
        typer.echo(
            "  ".join(
                f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                for key, value in row.items()
            )
        )
    summary = {
        "dataset": dataset,
        "rows": rows,
        "seconds": time.perf_counter() - began,
        "provenance": provenance(bundle.dataset.checksums, seed=seed, k=k, mlp_epochs=mlp_epochs),
    }
    if train_mlp:
        pixels = train(
            out / "mlp_pixels", MLPConfig(dataset, epochs=mlp_epochs, seed=seed), data_dir
        )
        summary["pixels_784"] = {
            "test_accuracy": pixels["test_accuracy"],
            "mlp_seconds": pixels["train_seconds"],
        }
        typer.echo(
            f"784 pixels: test accuracy {pixels['test_accuracy']:.4f} in {pixels['train_seconds']:.1f} s"
        )
    written = [
        write_json(out / "features.json", summary),
        write_csv(out / "features.csv", list(rows[0]), [list(r.values()) for r in rows]),
        save_figure(plot_feature_sweep(rows), out / "features.png"),
    ]
    typer.echo(f"sweep took {summary['seconds']:.1f} s")
    wrote(*written)


def pca(
    out: Path = typer.Option(..., help="Folder for the PCA pictures and numbers."),
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
    from sklearn.cluster import KMeans

    from mapscope.cluster.pca import principal_components
    from mapscope.errors import ConfigError
    from mapscope.report.cluster import plot_pca

    image = dataset != "wifi"
    bundle = clustering_bundle(dataset, seed, data_root=data_dir)
    x = (
        bundle.inputs("train") if not image else bundle.inputs("test")
    )  # 10000 images are plenty to look at
    labels = bundle.labels("train") if not image else bundle.labels("test")
    result = principal_components(x, 10, seed)
    k = clusters or bundle.dataset.n_classes
    assigned = KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    # colour each cluster by its majority label, so that a point whose colours differ is a mismatch
    counts = np.zeros((k, bundle.dataset.n_classes), dtype=np.int64)
    np.add.at(counts, (assigned, labels), 1)
    assigned = counts.argmax(1)[assigned]
    names = (
        [f"WLAN-{i}" for i in range(x.shape[1])]
        if not image
        else [f"px{i}" for i in range(x.shape[1])]
    )
    try:
        pair_list = (
            [tuple(int(v) for v in p.split("-")) for p in pairs.split(",") if p]
            if not image
            else []
        )
    except ValueError as exc:
        raise ConfigError(f"--pairs must look like 0-4,0-3; got {pairs!r}.") from exc
    for a, b in pair_list:
        if not (0 <= a < x.shape[1] and 0 <= b < x.shape[1]):
            raise ConfigError(f"--pairs {a}-{b}: features are 0..{x.shape[1] - 1}.")
    fig = plot_pca(result, x, labels, assigned, names, pair_list, bundle.dataset.class_names)
    written = [
        save_figure(fig, out / "pca.png"),
        write_json(
            out / "pca.json",
            {
                "dataset": dataset,
                "samples": len(x),
                "explained_variance_ratio": result["explained_variance_ratio"],
                "loadings": result["components"][:3] if not image else None,
                "feature_names": names if not image else None,
                "clusters": k,
                "provenance": provenance(bundle.dataset.checksums, seed=seed),
            },
        ),
    ]
    ratio = result["explained_variance_ratio"]
    typer.echo(
        f"explained variance of the first components: {np.round(ratio[:5], 4).tolist()} "
        f"(cumulative {ratio[:2].sum():.3f} for two)"
    )
    wrote(*written)
