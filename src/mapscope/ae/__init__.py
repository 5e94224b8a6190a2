"""Convolutional autoencoders: spec, network, training, the latent study and the samplers."""
