"""Integrated gradients: the gradient averaged along the straight path from a blank image to the
input, times the input's difference from the blank (Sundararajan et al. 2017). Signed: the
pixel's share of the score's rise (red) or fall (blue) from the blank image's score."""

from __future__ import annotations

from mapscope.inspect.attribution.method import AttributionMethod, Problem


def _integrated_gradients(problem: Problem):
    from captum.attr import IntegratedGradients

    x, steps = problem.inputs, problem.steps
    return IntegratedGradients(problem.net).attribute(
        x,
        baselines=problem.baseline,
        target=problem.targets,
        n_steps=steps,
        internal_batch_size=len(x) * steps,
    )


INTEGRATED_GRADIENTS = AttributionMethod(
    "ig", "integrated gradients", signed=True, compute=_integrated_gradients
)
