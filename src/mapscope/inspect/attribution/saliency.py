"""Saliency: the magnitude of the class score's gradient at each input pixel (Simonyan et al.
2014). Unsigned: how much a pixel matters, not in which direction."""

from __future__ import annotations

from mapscope.inspect.attribution.method import AttributionMethod, Problem


def _saliency(problem: Problem):
    from captum.attr import Saliency

    x = problem.inputs.requires_grad_(True)
    return Saliency(problem.net).attribute(x, target=problem.targets, abs=True)


SALIENCY = AttributionMethod("saliency", "saliency (|gradient|)", signed=False, compute=_saliency)
