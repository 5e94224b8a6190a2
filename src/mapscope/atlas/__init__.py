"""The atlas: a static, offline website of everything a trained model holds.

``build_atlas`` computes (statistics, OIPs, attributions; cached), ``write_atlas`` renders the
pages from Jinja2 templates. Like OpenAI's Microscope, but for the user's own model.
"""

from mapscope.atlas.build import Atlas, build_atlas
from mapscope.atlas.site import write_atlas

__all__ = ["Atlas", "build_atlas", "write_atlas"]
