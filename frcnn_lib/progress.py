"""A progress bar for long loops of the command line: Keras' own bar, so it looks like ``fit``."""
import keras


def progress_bar(iterable, label, enabled=True):
    """Yield from ``iterable`` while drawing a ``keras.utils.Progbar`` titled ``label``."""
    items = list(iterable)
    if not enabled or not items:
        yield from items
        return
    print(label)
    bar = keras.utils.Progbar(len(items), unit_name="batch")
    for i, item in enumerate(items):
        yield item
        bar.update(i + 1)
