"""Occlusion: how much the class score drops when a square of the image is replaced by the
blank image, square by square with half-overlapping steps (Zeiler & Fergus 2014). Signed: a
square whose removal raises the score counts against the class."""

from __future__ import annotations

from mapscope.inspect.attribution.method import AttributionMethod, Problem


def _occlusion(problem: Problem):
    from captum.attr import Occlusion

    x, shape, net = problem.inputs, problem.image_shape, problem.net
    pixels = x.view(len(x), *shape)
    window = max(2, shape[1] // 7)
    step = max(1, window // 2)

    def scores(images):
        return net(images.view(len(images), *x.shape[1:]))

    return Occlusion(scores).attribute(
        pixels,
        sliding_window_shapes=(shape[0], window, window),
        strides=(shape[0], step, step),
        baselines=problem.baseline.view(len(x), *shape),
        target=problem.targets,
        perturbations_per_eval=64,
    )


OCCLUSION = AttributionMethod("occlusion", "occlusion", signed=True, compute=_occlusion)
