"""The CNN: a typed spec, a builder with named layers, training, summary and prediction."""
