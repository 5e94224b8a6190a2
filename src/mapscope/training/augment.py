"""Data augmentation for classifiers: each training image moved by a random whole-pixel offset.

A digit moved by a pixel or two is the same digit, so a network trained on moved copies learns
that its answer should not depend on where the stroke sits (the translations of Simard et al.
2003, torchvision's ``RandomAffine(translate=...)`` with whole pixels). The offsets are drawn from
the trainer's generator, so a run stays reproducible for its seed and a resumed run draws what
an uninterrupted one would have drawn.

Images are moved after scaling. That is exact for scalings that treat every pixel alike
(``unit``, ``none``, per-image ``image``): the uncovered border takes the image's background (its
smallest value). Per-pixel ``standard`` scaling is refused by ``TrainConfig``: a stroke moved onto
a pixel that is blank in every training image would be scaled by that pixel's standard deviation
of (nearly) zero.
"""

from __future__ import annotations

import torch


def shift_images(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W), each image moved by its own offset, drawn uniformly from
    -``most``..``most`` pixels down and across; the border it leaves is filled with that image's
    smallest value. ``most`` 0 returns ``x`` and draws nothing."""
    if most == 0:
        return x
    n, channels, height, width = x.shape
    tall, wide, reach = height + 2 * most, width + 2 * most, 2 * most + 1
    # where each output's window starts in the padded image: ``most`` minus the offset
    starts = torch.randint(0, reach, (2, n), generator=generator)
    padded = x.amin(dim=(1, 2, 3)).view(n, 1, 1, 1).expand(n, channels, tall, wide).clone()
    padded[:, :, most : most + height, most : most + width] = x
    windows = padded.as_strided(  # every (row, column) start of every image, as a view
        (n, reach, reach, channels, height, width),
        (channels * tall * wide, wide, 1, tall * wide, wide, 1),
    )
    moved = windows[torch.arange(n), starts[0], starts[1]]
    return moved.contiguous(memory_format=torch.channels_last)
