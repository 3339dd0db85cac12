"""The input pipeline's speed knobs change speed only: ``DetectionData.cached()`` and
``make_dataset(num_parallel_calls=...)`` (measured in benchmarks/bench_pipeline.py)."""
import numpy as np
from PIL import Image

from frcnn_lib.datasets import imageio
from frcnn_lib.datasets.records import DetectionData, ImageRecord


def _files_data(tmp_path, count=5):
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        h, w = (40, 56) if i % 2 else (56, 40)
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(image=str(path), boxes=[[2, 3, 20, 30]], labels=[1 + i % 2],
                                   difficult=[False], image_id=i, height=h, width=w))
    return DetectionData(records, ["a", "b"], name="files", default_sides=(48, 64))


def test_cached_decodes_each_file_once_and_returns_the_same_pixels(tmp_path, monkeypatch):
    data = _files_data(tmp_path)
    cached = data.cached()
    reads = []
    original = imageio.read_image
    monkeypatch.setattr(imageio, "read_image", lambda path, root=None: reads.append(path) or original(path, root))
    for _ in range(3):
        for i in range(len(data)):
            np.testing.assert_array_equal(cached.read_image(i), np.asarray(Image.open(data.records[i].image)))
    assert sorted(reads) == sorted(r.image for r in data.records)  # once each, not three times
    assert len(cached) == len(data) and cached.class_names == data.class_names
    data.read_image(0)
    assert len(reads) == len(data) + 1  # the original dataset does not cache


def test_num_parallel_calls_and_the_cache_give_the_same_batches(tmp_path):
    from frcnn_lib.datasets.pipeline import make_dataset

    data = _files_data(tmp_path)

    def batches(source, **kwargs):
        ds = make_dataset(source, batch_size=2, training=True, seed=3, **kwargs)
        return [(images.numpy(), {k: v.numpy() for k, v in t.items()}) for images, t in ds]

    reference = batches(data)
    assert sum(len(images) for images, _ in reference) == len(data)
    for other in (batches(data, num_parallel_calls=1), batches(data, num_parallel_calls=3),
                  batches(data.cached())):
        assert len(other) == len(reference)
        for (ia, ta), (ib, tb) in zip(reference, other):
            np.testing.assert_array_equal(ia, ib)
            for key in ta:
                np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
