"""Shift augmentation (``training/augment.py``): each image moved by its own whole-pixel offset,
its border filled with its background, drawn from the run's generator."""

from __future__ import annotations

import pytest
import torch
from small_nets import SMALL_CNN

from mapscope.ae.train import AETrainConfig
from mapscope.cnn.train import TrainConfig, train
from mapscope.errors import ConfigError
from mapscope.runs import Run
from mapscope.training.augment import shift_images
from mapscope.weights import load_weights


def moved_by_hand(image: torch.Tensor, down: int, across: int) -> torch.Tensor:
    """One (C, H, W) image moved ``down`` rows and ``across`` columns, pixel by pixel."""
    channels, height, width = image.shape
    out = torch.full_like(image, image.min().item())
    for r in range(height):
        for c in range(width):
            if 0 <= r - down < height and 0 <= c - across < width:
                out[:, r, c] = image[:, r - down, c - across]
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_each_image_moves_by_its_own_offset_and_keeps_its_background(channels):
    x = torch.rand(6, channels, 7, 9) + torch.arange(6.0).view(6, 1, 1, 1)  # other backgrounds
    moved = shift_images(x, 2, torch.Generator().manual_seed(3))
    offsets = 2 - torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(3))
    for i in range(6):
        down, across = offsets[:, i].tolist()
        assert torch.equal(moved[i], moved_by_hand(x[i], down, across)), (i, down, across)
    assert moved.is_contiguous(memory_format=torch.channels_last)


def test_offsets_cover_every_shift_up_to_the_most_and_none_beyond():
    # a single lit pixel in the middle of a blank image shows where the image went
    x = torch.zeros(2000, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    moved = shift_images(x, 2, torch.Generator().manual_seed(0))
    lit = moved[:, 0].flatten(1).argmax(1)
    rows, cols = lit.div(9, rounding_mode="floor"), lit % 9
    assert moved.sum().item() == 2000  # no stroke lost at this distance from the edge
    seen = torch.stack([rows - 4, cols - 4], 1)
    assert seen.min().item() == -2 and seen.max().item() == 2
    counts = torch.unique(seen, dim=0, return_counts=True)[1]
    assert len(counts) == 25 and counts.min() > 40  # all 25 offsets, each about 80 times


def test_no_shift_returns_the_batch_and_draws_nothing():
    x, generator = torch.rand(4, 1, 5, 5), torch.Generator().manual_seed(1)
    before = generator.get_state()
    assert shift_images(x, 0, generator) is x
    assert torch.equal(generator.get_state(), before)


def test_shift_is_refused_where_it_would_be_wrong():
    TrainConfig(shift=2, scaling="unit").validate()
    TrainConfig(shift=2, scaling="image").validate()
    with pytest.raises(ConfigError, match="shift needs a scaling .* add --scaling unit"):
        TrainConfig(shift=2).validate()  # the per-pixel standard scaling
    with pytest.raises(ConfigError, match="shift must be >= 0"):
        TrainConfig(shift=-1, scaling="unit").validate()
    with pytest.raises(ConfigError, match="shift must be at most 8 pixels"):
        TrainConfig(shift=9, scaling="unit").validate()
    with pytest.raises(ConfigError, match="shift applies to classifiers"):
        AETrainConfig(shift=1).validate()


def test_a_shifted_run_is_reproducible_and_resumes_to_the_uninterrupted_weights(
    real_data, tmp_path
):
    short = {"max_train": 256, "max_test": 500, "scaling": "unit", "shift": 2}
    short["schedule"] = "none"  # onecycle's length is the planned epochs, which resuming extends
    for name in ("a", "b"):
        train(tmp_path / name, TrainConfig(epochs=2, **short), SMALL_CNN, data_root=real_data)
    train(tmp_path / "r", TrainConfig(epochs=1, **short), SMALL_CNN, data_root=real_data)
    train(tmp_path / "r", TrainConfig(epochs=1), resume=True, data_root=real_data)
    unshifted = {**short, "shift": 0}
    train(tmp_path / "s", TrainConfig(epochs=2, **unshifted), SMALL_CNN, data_root=real_data)

    def weights(name: str) -> dict[str, torch.Tensor]:
        from mapscope.cnn.build import build

        net = build(SMALL_CNN, 0)
        load_weights(net, Run.open(tmp_path / name).files["model"])
        return net.state_dict()

    a, b, resumed, unmoved = (weights(n) for n in ("a", "b", "r", "s"))
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], resumed[k]) for k in a)
    assert not all(torch.equal(a[k], unmoved[k]) for k in a)  # the shifts changed the training
