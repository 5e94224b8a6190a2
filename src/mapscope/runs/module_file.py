"""A user's own network from the command line: ``--module models.py:make_net --weights W``.

Loading the user's Python file runs its code, which is the user's choice (like ``python
models.py``). Loading weights never runs code: safetensors; a ``state_dict`` written by
``torch.save``, read with ``weights_only=True`` (a dict with a ``state_dict`` or
``model_state_dict`` entry, as training checkpoints keep it, works too); or a TorchScript
archive, whose tensors are read with ``torch.jit.load`` (TorchScript is compiled, not Python,
and nothing in it is run). A TorchScript file can also be the whole module (``--module
net.pt``): it predicts, but its compiled graph does not call forward hooks, so it can be
evaluated, not looked inside.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from mapscope.errors import ConfigError
from mapscope.io import expand_user

CHECKPOINT_ENTRIES = ("state_dict", "model_state_dict", "model")


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder beside its tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
    return any("/code/" in name or name.startswith("code/") for name in names)


def load_module(reference: str) -> nn.Module:
    """``FILE.py:NAME`` (a class, a function returning a module, or a module object; dotted
    names reach into the file, e.g. ``nets.py:zoo.lenet``), or a TorchScript file."""
    path_text, _, name = reference.rpartition(":") if ":" in reference else (reference, "", "")
    path = expand_user(path_text)
    if not name:
        if path.is_file() and is_torchscript(path):
            try:
                return torch.jit.load(str(path), map_location="cpu").eval()
            except Exception as exc:  # torch raises RuntimeError and others for damaged archives
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(
                    f"--module {reference!r}: a damaged TorchScript file ({first}); save it "
                    "again with torch.jit.save."
                ) from None
        raise ConfigError(
            f"--module {reference!r}: give FILE.py:NAME, e.g. models.py:make_net (a class or a "
            "function that returns the nn.Module), or a TorchScript file."
        )
    if path.suffix != ".py" or not path.is_file():
        raise ConfigError(f"--module {reference!r}: {path} is not a Python file (.py).")
    spec = importlib.util.spec_from_file_location(f"mapscope_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--module {reference!r}: Python cannot load {path} as a module.")
    code = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = code  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(code)
    except Exception as exc:
        raise ConfigError(f"--module: running {path} failed: {type(exc).__name__}: {exc}") from None
    target = code
    for part in name.split("."):
        if not hasattr(target, part):
            found = sorted(
                n for n, v in vars(code).items() if not n.startswith("_") and callable(v)
            )
            raise ConfigError(
                f"--module: {path} has no {name!r}; callables defined there: {', '.join(found)}."
            )
        target = getattr(target, part)
    if not isinstance(target, nn.Module):
        if not callable(target):
            raise ConfigError(f"--module: {name} in {path} is neither a module nor callable.")
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(
                f"--module: {name}() failed: {type(exc).__name__}: {exc}; it must build the "
                "network without arguments."
            ) from None
    if not isinstance(target, nn.Module):
        raise ConfigError(
            f"--module: {name} in {path} gave a {type(target).__name__}, not a torch.nn.Module."
        )
    return target.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from safetensors, a ``torch.save`` state_dict or a TorchScript file."""
    path = expand_user(path)
    if not path.is_file():
        raise ConfigError(f"--weights {path} not found.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(
                f"--weights {path}: not a readable safetensors file ({exc})."
            ) from None
    if is_torchscript(path):
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as exc:
            raise ConfigError(f"--weights {path}: a damaged TorchScript file ({exc}).") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # never retried with weights_only=False: that would run the file's code
        raise ConfigError(
            f"--weights {path}: not a safetensors, state_dict or TorchScript file (or it holds "
            "Python objects besides tensors, which are never loaded). Save the weights with "
            "torch.save(net.state_dict(), path) or safetensors."
        ) from None
    if isinstance(state, dict):
        for entry in CHECKPOINT_ENTRIES:
            if isinstance(state.get(entry), dict):
                state = state[entry]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"--weights {path}: expected a state_dict (tensor names -> tensors), found "
            f"{type(state).__name__} with entries {sorted(map(str, state))[:6] if isinstance(state, dict) else ''}."
        )
    return state


def load_weights_into(module: nn.Module, path: str | Path) -> nn.Module:
    """The weights at ``path`` in ``module``; names and shapes must match exactly."""
    state = read_state_dict(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (module: {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"not in the module {', '.join(unexpected[:6])}")
        if wrong:
            parts.append(f"other shapes {', '.join(wrong[:4])}")
        raise ConfigError(
            f"--weights {path} does not fit the module ({'; '.join(parts)}); were they saved "
            "from this class?"
        )
    module.load_state_dict(state)
    return module
