"""Clustering: KMeans as a classifier, elbow/silhouette/PCA analysis, cluster-distance features."""
