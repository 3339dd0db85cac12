"""Stand-ins for ImageNet weights, which cannot be downloaded here: the same
``keras.applications`` graphs, built with seeded random values when ``weights="imagenet"``.

``install()`` patches ``keras.applications.VGG16`` and ``ResNet50`` in this process.
"""
import keras

_REAL = {}


def install():
    for name in ("VGG16", "ResNet50"):
        real = _REAL.setdefault(name, getattr(keras.applications, name))

        def fake(*args, _real=real, weights="imagenet", **kwargs):
            if weights == "imagenet":
                keras.utils.set_random_seed(0)
                weights = None
            return _real(*args, weights=weights, **kwargs)
        setattr(keras.applications, name, fake)


def uninstall():
    for name, real in _REAL.items():
        setattr(keras.applications, name, real)

