"""The face sets that scikit-learn downloads for online users, through scikit-learn itself.

``olivetti-faces`` (400 grey 64x64 faces of 40 people, AT&T Laboratories Cambridge) and
``lfw-people`` (Labeled Faces in the Wild, people with at least 20 pictures). scikit-learn
fetches them into ``<data dir>/scikit_learn_data`` and checks its downloads against its own
pinned SHA-256; here they are centre-cropped and resized like an image folder, and the run
records the SHA-256 of the array it trained on.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from mapscope.data.folder import square
from mapscope.errors import DataError

FACE_SETS = {
    "olivetti-faces": "fetch_olivetti_faces",
    "lfw-people": "fetch_lfw_people",
}


def read_faces(
    name: str, root: Path, size: int = 64, colour: str = "grey"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(images uint8, labels, class names, SHA-256 of the images) of a scikit-learn face set."""
    import sklearn.datasets

    fetch = getattr(sklearn.datasets, FACE_SETS[name])
    options = {"min_faces_per_person": 20, "resize": 1.0} if name == "lfw-people" else {}
    if name == "lfw-people" and colour == "rgb":
        options["color"] = True
    try:
        with warnings.catch_warnings():  # its "retry downloading" notes: the error says it all
            warnings.simplefilter("ignore")
            bunch = fetch(data_home=str(root / "scikit_learn_data"), **options)
    except OSError as exc:  # urllib's errors are OSErrors: offline, or a mirror down
        raise DataError(
            f"scikit-learn could not download {name} into {root / 'scikit_learn_data'} ({exc}). "
            "Run once while online, or use --dataset folder:PATH with your own images."
        ) from exc
    images = np.asarray(bunch.images, dtype=np.float32)
    if images.max() > 1.0:  # LFW comes as 0..255, Olivetti as 0..1
        images = images / 255.0
    pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    mode = "RGB" if pixels.ndim == 4 else "L"
    x = np.stack([np.asarray(square(Image.fromarray(p, mode), size)) for p in pixels])
    if colour == "rgb" and x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    names = tuple(str(n) for n in getattr(bunch, "target_names", range(bunch.target.max() + 1)))
    return x, np.asarray(bunch.target, dtype=np.int64), names, hashlib.sha256(x).hexdigest()
