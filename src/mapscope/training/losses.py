"""Cross-entropy with label smoothing as one autograd node, for the training step.

``F.cross_entropy(logits, target, label_smoothing=s)`` builds the smoothed loss from a dozen
small operations (log-softmax, the negative log-likelihood, a sum over classes, their mix),
each with its own backward node. The same loss is one dot product of the log-probabilities with
the smoothed target distribution, and its gradient is ``softmax - target distribution``; as one
node, forward and backward took 95 instead of 129 us for a batch of 64 and 10 classes on 2
cores (AMD Zen 4). The value equals torch's up to float rounding (the sums run in another
order); ``tests/test_losses.py`` holds it to torch's for values and gradients.
"""

from __future__ import annotations

import torch


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """The mean over the batch of ``-sum_c q_c log softmax(logits)_c``, where ``q`` puts
    ``1 - smoothing`` on the target class and spreads ``smoothing`` evenly over all classes:
    ``F.cross_entropy(logits, target, label_smoothing=smoothing)`` for (N, classes) float
    logits and N class indices."""
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(
            f"logits of shape (N, classes) and N targets expected, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    return _SmoothedCrossEntropy.apply(logits, target, float(smoothing))


def smoothed_cross_entropy_and_gradient(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``smoothed_cross_entropy`` and its gradient with respect to ``logits``, without autograd
    (for a training step computed by hand, ``cnn/whole_step.py``)."""
    log_p, wanted = _log_probabilities_and_wanted(logits, target, smoothing)
    return _mean_loss(log_p, wanted), _gradient(log_p, wanted, 1.0)


def _log_probabilities_and_wanted(logits, target, smoothing):
    classes = logits.shape[1]
    log_p = torch.log_softmax(logits, dim=1)
    wanted = torch.full_like(log_p, smoothing / classes)
    wanted.scatter_(1, target[:, None], 1.0 - smoothing + smoothing / classes)
    return log_p, wanted


def _mean_loss(log_p: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    return torch.dot(wanted.view(-1), log_p.view(-1)).mul_(-1.0 / len(log_p))


def _gradient(log_p: torch.Tensor, wanted: torch.Tensor, grad) -> torch.Tensor:
    """The loss's gradient times ``grad`` (the gradient flowing into the loss)."""
    return (log_p.exp() - wanted).mul_(grad / len(log_p))


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, smoothing):
        log_p, wanted = _log_probabilities_and_wanted(logits, target, smoothing)
        ctx.save_for_backward(log_p, wanted)
        return _mean_loss(log_p, wanted)

    @staticmethod
    def backward(ctx, grad):
        return _gradient(*ctx.saved_tensors, grad), None, None
