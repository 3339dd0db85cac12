"""Browser tests run only through ``make browser`` (which sets FRCNN_BROWSER=1 and installs the
``browser`` extra: playwright and JupyterLab).  Without FRCNN_BROWSER=1 this folder is not
collected at all, so ``pytest tests`` neither imports playwright nor reports skips."""
import os


def pytest_ignore_collect(collection_path, config):
    if os.environ.get("FRCNN_BROWSER") != "1":
        return True
    return None
