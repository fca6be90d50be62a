"""Image sources: folders with labels, npz arrays read row by row, batches of one size, clear errors."""
import numpy as np
import pytest
from PIL import Image

from evaluation.images import FolderSource, ImageSourceError, NpzSource, open_images


def test_folder_source_labels_by_subfolder_and_batches_runs_of_one_size(tmp_path):
    rng = np.random.default_rng(0)
    for name, size in (("A/1.png", 32), ("A/2.png", 32), ("B/3.png", 48), ("B/4.jpg", 48), ("5.png", 32)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        img.save(tmp_path / name)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "A" / "gray.png")  # grey -> RGB
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_images(tmp_path)
    assert isinstance(source, FolderSource)
    assert source.names == ["5.png", "A/1.png", "A/2.png", "A/gray.png", "B/3.png", "B/4.jpg"]
    assert source.labels == ["", "A", "A", "A", "B", "B"]
    assert source.format_counts() == {"PNG": 5, "JPEG": 1}
    assert source.size_counts() == {"32x32": 4, "48x48": 2}
    batches = list(source.batches(3))
    assert [idx for idx, _ in batches] == [[0, 1, 2], [3], [4, 5]]
    assert batches[2][1].shape == (2, 3, 48, 48) and batches[2][1].dtype.is_floating_point is False
    np.testing.assert_array_equal(batches[0][1][1].permute(1, 2, 0).numpy(), np.asarray(Image.open(tmp_path / "A/1.png")))
    first = source.fingerprint()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "A" / "1.png")
    assert open_images(tmp_path).fingerprint() != first


def test_npz_source_reads_guided_diffusion_samples_row_by_row(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    path = tmp_path / "samples.npz"
    np.savez_compressed(path, arr_0=images, arr_1=np.array([3, 1, 3, 1, 3]))
    source = open_images(path)
    assert isinstance(source, NpzSource)
    assert source.labels == ["3", "1", "3", "1", "3"]
    for i in (4, 0, 2):
        np.testing.assert_array_equal(source.load(i), images[i])
    stacked = np.concatenate([b.permute(0, 2, 3, 1).numpy() for _, b in source.batches(2)])
    np.testing.assert_array_equal(stacked, images)


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageSourceError, match="broken.png"):
        list(open_images([bad]).batches(2))
    wrong = tmp_path / "floats.npz"
    np.savez(wrong, arr_0=np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ImageSourceError, match="floats.npz.*uint8"):
        open_images(wrong)
    with pytest.raises(ImageSourceError, match="neither a folder"):
        open_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageSourceError, match="no image files"):
        open_images(tmp_path / "empty")
