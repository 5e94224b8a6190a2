"""The training step's cross-entropy against torch's."""

import pytest
import torch
import torch.nn.functional as F

from mapscope.training.losses import smoothed_cross_entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_smoothed_cross_entropy_equals_torch_in_value_and_gradient(smoothing):
    generator = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(33, 10, generator=generator)).requires_grad_()
    target = torch.randint(0, 10, (33,), generator=generator)
    expected = F.cross_entropy(logits, target, label_smoothing=smoothing)
    (want,) = torch.autograd.grad(expected, logits)
    got = smoothed_cross_entropy(logits, target, smoothing)
    (have,) = torch.autograd.grad(3.0 * got, logits)  # an upstream gradient other than 1
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(have, 3.0 * want)


def test_smoothed_cross_entropy_names_the_shapes_it_wants():
    with pytest.raises(ValueError, match=r"\(N, classes\).*\(4, 10\) and \(5,\)"):
        smoothed_cross_entropy(torch.zeros(4, 10), torch.zeros(5, dtype=torch.long))


def test_cnn_step_loss_is_torchs_cross_entropy_with_the_configs_smoothing():
    from mapscope.cnn.build import build
    from mapscope.cnn.spec import default_spec
    from mapscope.cnn.train import CNNTask, TrainConfig

    net = build(default_spec(), 0)
    output = torch.randn(8, 10)
    target = torch.arange(8)
    config = TrainConfig(label_smoothing=0.2)
    got = CNNTask().step_loss(net, output, target, config)
    torch.testing.assert_close(got, F.cross_entropy(output, target, label_smoothing=0.2))
