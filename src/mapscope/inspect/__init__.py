"""Looking inside a trained CNN: layer outputs, activation grids, comparisons and OIPs."""
