"""The training pipeline on a tiny generated data set: read, split, train, export, load, predict."""

import gc
import io
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from training import data as datasets
from training import evaluate, report, retrain, train
from training import model as networks
from training.preprocess import ImageDecodeError, load_image
from training.runtime import display_name, load

CLASSES = ["cats", "dogs", "striped_zebras"]
FORMATS = ["jpg", "png", "bmp", "gif", "webp", "jpeg"]


def texture(name: str, height: int, width: int) -> np.ndarray:
    """Each class has its own look: flat red, a blue checkerboard, black-and-white stripes."""
    rows, cols = np.mgrid[0:height, 0:width]
    if name == "cats":
        return np.zeros((height, width, 3)) + (200, 40, 40)
    if name == "dogs":
        return ((rows // 5 + cols // 5) % 2)[..., None] * (40, 40, 200) + 20
    return np.repeat((255 * (cols // 4 % 2))[..., None], 3, axis=2)


def write_photos(root: Path, classes: list[str]) -> Path:
    """Twelve noisy photos of each class, in every format the reader takes."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(12):
            ext = FORMATS[i % len(FORMATS)]
            noise = rng.normal(0, 12, (30 + i, 40, 3))
            pixels = np.clip(texture(name, 30 + i, 40) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{ext}")
    return root


@pytest.fixture
def tiny_data(tmp_path):
    root = write_photos(tmp_path / "data", CLASSES)
    (root / "cats" / "notes.txt").write_text("not a photo, ignored")
    return root


def test_discover_reads_any_class_names_in_sorted_order(tiny_data):
    data = datasets.discover(tiny_data)

    assert data.classes == ["cats", "dogs", "striped_zebras"]
    assert data.counts() == {"cats": 12, "dogs": 12, "striped_zebras": 12}
    assert "cats/notes.txt" not in data.files


def test_discover_knows_a_class_whose_accents_are_written_apart_as_macos_writes_them(tmp_path):
    for name in ("cre\u0300me", "tart"):  # "crème" with a combining grave, as a Mac may have saved it
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "1.png")

    trained = datasets.discover(tmp_path)
    evaluated = datasets.discover(tmp_path, classes=["crème", "tart"])  # a model's labels, composed

    assert trained.classes == ["crème", "tart"] and list(evaluated.labels) == [0, 1]
    assert trained.files[0] == "cre\u0300me/1.png"  # read where it is
    # a base trained where the name was written composed keeps its validation photo there
    _, validation = datasets.split_as_before(trained, ["crème/1.png"], 0.5, 1)
    assert list(validation) == [0]
    assert datasets.is_text("noon\u200cday") and not datasets.is_text("tart\u202eeliforp")


def test_discover_refuses_a_folder_the_model_does_not_know(tiny_data):
    with pytest.raises(ValueError, match="not classes of the model"):
        datasets.discover(tiny_data, classes=["cats", "dogs"])


def test_discover_refuses_a_class_folder_without_photos(tiny_data):
    (tiny_data / "empty_ones").mkdir()
    (tiny_data / "empty_ones" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")

    with pytest.raises(ValueError, match="empty_ones"):
        datasets.discover(tiny_data)


def test_discover_refuses_a_single_class(tmp_path):
    data_dir = photo_names(tmp_path, {"only": 6})

    with pytest.raises(datasets.DataError, match="needs at least two <class>/ folders"):
        datasets.discover(data_dir)
    assert datasets.discover(data_dir, classes=["only", "other"]).counts() == {"only": 6, "other": 0}


def test_discover_skips_hidden_files(tiny_data):
    (tiny_data / "cats" / "._0.png").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")  # an AppleDouble file

    data = datasets.discover(tiny_data)

    assert "cats/._0.png" not in data.files and data.counts()["cats"] == 12
    assert datasets.load_pixels(data, 8).shape == (36, 8, 8, 3)


def test_discover_reads_jfif_names_lists_what_it_skips_and_refuses_folder_names_that_are_not_text(tiny_data):
    (tiny_data / "cats" / "0.jpg").rename(tiny_data / "cats" / "0.jfif")  # as browsers save some JPEGs
    (tiny_data / "dogs" / "Thumbs.db").write_bytes(b"\0")
    (tiny_data / "dogs" / "more").mkdir()  # its photos are not read: said, not left out without a word
    (tiny_data / "dogs" / "more" / "1.png").write_bytes((tiny_data / "dogs" / "1.png").read_bytes())
    (tiny_data / "noon\u200cday").mkdir()  # a zero-width non-joiner, as Persian writes: text
    (tiny_data / "noon\u200cday" / "1.png").write_bytes((tiny_data / "dogs" / "1.png").read_bytes())

    data = datasets.discover(tiny_data)
    (tiny_data / "caf\udce9").mkdir()  # bytes that were not UTF-8 (an old zip's), as Python reads them
    with pytest.raises(datasets.DataError, match=r"folder names that are not text: 'caf\\udce9'; rename"):
        datasets.discover(tiny_data)

    assert "cats/0.jfif" in data.files and data.counts()["cats"] == 12 and data.counts()["dogs"] == 12
    assert data.skipped == ["cats/notes.txt", "dogs/Thumbs.db", "dogs/more/"]
    assert data.skipped_note().startswith("skipped 3 folders inside class folders, or files whose names "
                                          "are not a photo's (.bmp, ")
    assert data.skipped_note().endswith(": cats/notes.txt, dogs/Thumbs.db, dogs/more/")


@pytest.mark.parametrize("options, message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--image-size", "8"], "--image-size must be at least 16 for simple-cnn"),
    (["--arch", "mobilenet_v2", "--image-size", "16"], "--image-size must be at least 32 for mobilenet_v2"),
    (["--patience", "-1"], "--patience cannot be negative"),
])
def test_training_options_that_cannot_work_are_refused_before_any_photo_is_read(tmp_path, capsys,
                                                                                options, message):
    with pytest.raises(SystemExit) as exited:
        train.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "m"), "--arch", "simple-cnn",
                          *options])

    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_confusion_plots_take_any_class_name_and_stay_in_bounds_with_many_classes(tmp_path):
    report.plot_confusion([[1, 0], [0, 1]], ["$_$", "a_b$"], tmp_path / "dollars.png", "t")  # no formula
    many = np.eye(150, dtype=int).tolist()
    report.plot_confusion(many, [f"class {i}" for i in range(150)], tmp_path / "many.png", "t")

    with Image.open(tmp_path / "dollars.png") as small, Image.open(tmp_path / "many.png") as large:
        assert small.size[0] < 1000 and large.size[0] <= 4100 and large.size[1] <= 4000


def test_a_data_sets_digest_tells_other_photos_or_labels_apart_and_not_file_names(tiny_data):
    before = datasets.discover(tiny_data).digest()
    (tiny_data / "cats" / "0.jpg").rename(tiny_data / "cats" / "renamed.jpg")
    renamed = datasets.discover(tiny_data).digest()
    (tiny_data / "cats" / "renamed.jpg").rename(tiny_data / "dogs" / "renamed.jpg")
    relabelled = datasets.discover(tiny_data).digest()
    (tiny_data / "dogs" / "renamed.jpg").unlink()
    (tiny_data / "dogs" / "1.png").write_bytes((tiny_data / "dogs" / "2.bmp").read_bytes())

    assert renamed == before and len({before, relabelled, datasets.discover(tiny_data).digest()}) == 3


def test_a_photo_that_cannot_be_decoded_is_named_with_all_the_others(tiny_data):
    jpeg = tiny_data / "cats" / "0.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    (tiny_data / "dogs" / "1.png").write_bytes(b"not a png")

    with pytest.raises(ImageDecodeError) as raised:
        datasets.load_pixels(datasets.discover(tiny_data), 8)
    assert "cats/0.jpg" in str(raised.value) and "dogs/1.png" in str(raised.value)

    decoder = SimpleNamespace(slugs=CLASSES, classify=lambda path: load_image(path, 8))
    with pytest.raises(ImageDecodeError) as raised:
        evaluate.evaluate(decoder, tiny_data)
    assert "cats/0.jpg" in str(raised.value) and "dogs/1.png" in str(raised.value)


def photo_names(root, counts: dict[str, int]):
    """Empty files named like photos: enough for listing and splitting, which never decode."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i}.jpg").touch()
    return root


def test_validation_split_is_stratified_and_seeded(tiny_data):
    data = datasets.discover(tiny_data)

    train_a, val_a = datasets.split(data, 0.34, seed=7)
    train_b, val_b = datasets.split(data, 0.34, seed=7)
    _, val_c = datasets.split(data, 0.34, seed=8)

    assert list(val_a) == list(val_b)
    assert list(val_a) != list(val_c)
    assert not set(train_a) & set(val_a)
    assert sorted(np.bincount(data.labels[val_a]).tolist()) == [4, 4, 4]


def test_split_gives_every_class_a_validation_photo_and_a_training_photo(tmp_path):
    data = datasets.discover(photo_names(tmp_path, {"a": 100, "b": 100, "c": 2}))

    train_idx, val_idx = datasets.split(data, 0.15, seed=1)

    assert datasets.counts_per_class(data.labels[val_idx], data.classes) == {"a": 15, "b": 15, "c": 1}
    assert datasets.counts_per_class(data.labels[train_idx], data.classes)["c"] == 1
    assert list(val_idx) == list(datasets.split(data, 0.15, seed=1)[1])


def test_split_refuses_a_class_with_a_single_photo_by_name(tmp_path):
    data = datasets.discover(photo_names(tmp_path, {"a": 10, "b": 10, "c": 10, "d": 10, "lonely": 1}))

    with pytest.raises(ValueError, match=r"\['lonely'\]"):
        datasets.split(data, 0.15, seed=1)


def test_split_refuses_a_validation_fraction_that_leaves_a_class_nothing_to_train_on(tmp_path):
    data = datasets.discover(photo_names(tmp_path, {"a": 3, "b": 3}))

    with pytest.raises(datasets.DataError, match="takes 5 of the 6 photos.*--val-fraction"):
        datasets.split(data, 0.9, seed=1)
    train_idx, val_idx = datasets.split(data, 0.6, seed=1)  # 4 of 6: one per class left to train on
    assert len(train_idx) == 2 and len(val_idx) == 4


def test_class_weights_give_every_class_the_same_total_weight():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 20)

    weights = datasets.class_weights(labels, 3)

    totals = [weights[k] * (labels == k).sum() for k in range(3)]
    assert np.allclose(totals, totals[0])
    assert weights[1] > weights[2] > weights[0]


def test_augmentation_changes_photos_but_keeps_their_shape_and_range(tiny_data):
    data = datasets.discover(tiny_data)
    pixels = datasets.load_pixels(data, 32)
    onehot = np.eye(3, dtype=np.float32)[data.labels]

    augmented = next(iter(datasets.pipeline(pixels, onehot, 36, training=True, seed=1)))[0].numpy()
    plain = next(iter(datasets.pipeline(pixels, onehot, 36)))[0].numpy()

    assert augmented.shape == plain.shape == (36, 32, 32, 3)
    assert augmented.min() >= 0 and augmented.max() <= 255
    assert np.array_equal(plain, pixels.astype(np.float32))
    assert not np.allclose(np.sort(augmented.ravel()), np.sort(plain.ravel()))


def test_the_decoded_photos_a_killed_trainer_left_are_removed_and_a_live_one_keeps_reading(
        tiny_data, tmp_path, monkeypatch):
    """A SIGKILL skips the temporary folder's cleanup: each killed full run left every base photo
    decoded (165 MB) in TMPDIR for good."""
    import tempfile

    tmp = tmp_path / "tmp"
    (tmp / "cakesite-pixels-killed").mkdir(parents=True)
    (tmp / "cakesite-pixels-killed" / "pixels.npy").write_bytes(b"x" * 1000)
    (tmp / "someone-else").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    data = datasets.discover(tiny_data)

    with datasets.decoded(data, 8) as pixels:
        removed = datasets.remove_leftover_pixels()  # a second trainer starting now, say
        assert float(pixels[35].mean()) == float(datasets.load_pixels(data, 8)[35].mean())

    assert len(removed) == 2 and "cakesite-pixels-killed" in removed  # and the live one's, unharmed
    assert [p.name for p in tmp.iterdir()] == ["someone-else"]


def test_the_pipeline_reads_the_chosen_rows_of_a_pixel_file_without_copying_them(tiny_data, tmp_path):
    data = datasets.discover(tiny_data)
    on_disk = datasets.load_pixels(data, 16, out=datasets.pixel_array(len(data.files), 16, tmp_path))
    rows = np.array([30, 2, 17, 5, 11])

    plain = list(datasets.pipeline(on_disk, rows.astype(np.float32), 2, indices=rows).unbatch())
    shuffled = list(datasets.pipeline(on_disk, rows.astype(np.float32), 2, indices=rows,
                                      training=True, seed=1).unbatch())

    assert (tmp_path / "pixels.npy").stat().st_size >= 36 * 16 * 16 * 3
    assert np.array_equal(np.load(tmp_path / "pixels.npy"), datasets.load_pixels(data, 16))
    assert [float(label) for _, label in plain] == rows.tolist()
    assert np.array_equal(np.stack([x.numpy() for x, _ in plain]), on_disk[rows].astype(np.float32))
    assert sorted(float(label) for _, label in shuffled) == sorted(rows.tolist())
    with pytest.raises(ValueError, match="5 photos but 4 labels"):
        datasets.pipeline(on_disk, rows[:4], 2, indices=rows)

    # The dataset holds its pixels: one made from a temporary view still reads after the view is gone.
    from_view = datasets.pipeline(on_disk[:6], np.zeros(6, np.float32), 3)
    gc.collect()
    assert np.array_equal(next(iter(from_view))[0].numpy(), on_disk[:3].astype(np.float32))


@pytest.mark.slow
def test_training_decodes_to_a_temporary_file_and_removes_it(tiny_data, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    decoded_into = []
    load_pixels = datasets.load_pixels

    def watched(*args, out=None, **kwargs):
        decoded_into.append(getattr(out, "filename", None))
        return load_pixels(*args, out=out, **kwargs)

    monkeypatch.setattr(datasets, "load_pixels", watched)

    train_tiny(tiny_data, tmp_path / "cnn", "--arch", "simple-cnn", "--epochs", "1")

    folder = Path(decoded_into[0]).parent
    assert len(decoded_into) == 1 and folder.parent == scratch and folder.name.startswith("cakesite-pixels-")
    assert not folder.exists()  # (TensorFlow leaves its own autograph files in the folder; not ours)
    gc.collect()
    # Nor is the file still mapped, deleted, holding its disk space: a trainer worker lives on.
    assert str(folder) not in Path("/proc/self/maps").read_text()


def fit_tiny(model, x, y, epochs=3):
    """fit_phase on two clusters of points, validated on their right labels."""
    import tensorflow as tf

    right = np.eye(2, dtype=np.float32)[[0] * 8 + [1] * 8]
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    val_ds = tf.data.Dataset.from_tensor_slices((x, right)).batch(8)
    args = SimpleNamespace(label_smoothing=0.0, patience=5, max_steps=None)
    return train.fit_phase(model, "tiny", train_ds, val_ds, epochs, 0.5, None, args)


def test_a_phase_that_never_beats_the_weights_it_started_from_gives_them_back():
    import keras

    keras.utils.set_random_seed(0)
    x = np.concatenate([np.full((8, 2), -1.0), np.full((8, 2), 1.0)]).astype(np.float32)
    right = np.eye(2, dtype=np.float32)[[0] * 8 + [1] * 8]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    learned = fit_tiny(model, x, right, epochs=5)
    assert learned["kept"] == f"epoch {learned['best_epoch']}"
    start = model.get_weights()

    unlearned = fit_tiny(model, x, right[:, ::-1])  # wrong labels: validation only gets worse

    assert unlearned["kept"] == "start" and unlearned["val_loss"] == unlearned["start_val_loss"]
    assert all(np.array_equal(a, b) for a, b in zip(start, model.get_weights()))


def train_tiny(data_dir, out, *extra, size=32):
    return train.train(train.parse_args([
        "--data", str(data_dir), "--out", str(out), "--image-size", str(size), "--batch-size", "8",
        "--val-fraction", "0.34", "--seed", "3", *extra,
    ]))


@pytest.mark.slow
def test_mobilenet_learns_and_exports_a_folder_that_loads_and_predicts(tiny_data, tmp_path):
    folder = train_tiny(tiny_data, tmp_path / "model", "--head-epochs", "12", "--head-lr", "0.03",
                        "--finetune-epochs", "1", "--finetune-lr", "1e-6",
                        "--finetune-from", "block_16_expand", size=64)

    for name in ["model.keras", "model.tflite", "labels.json", "config.json", "metrics.json",
                 "embeddings.npz", "training_curves.png", "confusion_validation.png", "MODEL_CARD.md"]:
        assert (folder / name).is_file(), name
    labels = json.loads((folder / "labels.json").read_text())
    assert labels[2] == {"slug": "striped_zebras", "name": "Striped Zebras"}
    assert json.loads((folder / "metrics.json").read_text())["validation"]["n"] == 12
    cache = np.load(folder / "embeddings.npz")
    assert cache["embeddings"].shape == (36, 1280) and cache["embeddings"].dtype == np.float16
    assert cache["files"][0] == "cats/0.jpg"

    classifier = load(folder)
    probs = classifier.classify(tiny_data / "dogs" / "1.png")
    assert classifier.slugs == ["cats", "dogs", "striped_zebras"]
    assert probs.shape == (3,) and np.isclose(probs.sum(), 1.0)
    metrics, _, _ = evaluate.evaluate(classifier, tiny_data)
    assert metrics["top1"] >= 0.9 and metrics["digest"] == datasets.discover(tiny_data).digest()
    assert "| validation | 12 |" in (folder / "MODEL_CARD.md").read_text()

    evaluate.main(["--model", str(folder), "--data", str(tiny_data), "--name", "test", "--save"])
    assert set(json.loads((folder / "metrics.json").read_text())) == {"validation", "test"}
    assert (folder / "confusion_test.png").is_file()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "| validation | 12 |" in card and f"| test | {metrics['n']} |" in card


@pytest.mark.slow
def test_simple_cnn_training_is_reproducible_with_the_same_seed(tiny_data, tmp_path):
    runs = [train_tiny(tiny_data, tmp_path / f"cnn{i}", "--arch", "simple-cnn", "--epochs", "3")
            for i in range(2)]

    first, second = (load(folder) for folder in runs)
    data = datasets.discover(tiny_data)
    pixels = datasets.load_pixels(data, 32)
    assert np.array_equal(first.predict_pixels(pixels), second.predict_pixels(pixels))


@pytest.mark.slow
def test_serving_sees_exactly_the_pixels_that_training_saw(tiny_data, tmp_path):
    folder = train_tiny(tiny_data, tmp_path / "model", "--arch", "simple-cnn", "--epochs", "1")
    classifier = load(folder)
    data = datasets.discover(tiny_data)
    onehot = np.eye(3, dtype=np.float32)[data.labels]

    batches = datasets.pipeline(datasets.load_pixels(data, 32), onehot, 8)
    from_training = np.concatenate([classifier.model(x, training=False) for x, _ in batches])
    from_serving = np.stack([classifier.classify(tiny_data / f) for f in data.files])

    assert np.allclose(from_training, from_serving, atol=1e-6)


@pytest.mark.parametrize("outputs", ["probabilities and feature map", "probabilities"])
def test_folders_exported_before_the_head_moved_out_of_litert_still_serve(tmp_path, outputs):
    """Model versions registered before 2026-11-23 have a LiteRT file that ends in the softmax
    (with the feature map as a second output since heat maps came): they keep working."""
    import keras
    import tensorflow as tf

    from training import model as networks

    net = networks.build("simple-cnn", len(CLASSES), 32)
    legacy = [net.output, net.get_layer(networks.FEATURES).input][:2 if "feature" in outputs else 1]
    folder = tmp_path / "legacy"
    folder.mkdir()
    net.save(folder / "model.keras")
    (folder / "model.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(keras.Model(net.input, legacy)).convert())
    if "feature" in outputs:
        kernel, bias = net.get_layer(networks.HEAD).get_weights()
        np.savez(folder / "head.npz", kernel=kernel, bias=bias)
    (folder / "labels.json").write_text(json.dumps([{"slug": c, "name": c} for c in CLASSES]))
    (folder / "config.json").write_text(json.dumps({"image_size": 32}))
    pixels = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)

    classifier = load(folder)

    assert classifier.uses_litert
    expected = np.asarray(net(pixels.astype(np.float32), training=False))
    assert np.allclose(classifier.predict_pixels(pixels), expected, atol=1e-5)


def test_an_export_into_a_folder_leaves_the_files_other_folders_link_to_as_they_were(tmp_path):
    """A head refit links its base's LiteRT file: training again into the base's folder must not
    change the refit version's model under it (nor a worker's, which maps the file in memory)."""
    import keras

    from training.runtime import write_tflite

    for folder in ("base", "refit"):
        (tmp_path / folder).mkdir()
    keras.utils.set_random_seed(1)
    write_tflite(networks.build("simple-cnn", 2, 32), tmp_path / "base")
    retrain.link_or_copy(tmp_path / "base" / "model.tflite", tmp_path / "refit" / "model.tflite")
    linked = (tmp_path / "refit" / "model.tflite").read_bytes()
    keras.utils.set_random_seed(2)
    write_tflite(networks.build("simple-cnn", 2, 32), tmp_path / "base")

    assert (tmp_path / "refit" / "model.tflite").read_bytes() == linked
    assert (tmp_path / "base" / "model.tflite").read_bytes() != linked
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["head.npz", "model.tflite"]


def test_macro_figures_count_only_the_classes_in_the_data(tmp_path):
    classes = ["a", "b", "c", "d"]
    y_true = np.array([0, 0, 1, 1])
    probs = np.eye(4)[[0, 2, 1, 1]]  # one "a" taken for "c", a class with no photos here

    m = report.metrics(y_true, probs, classes)

    assert m["top1"] == 0.75 and np.isclose(m["macro_f1"], (2 / 3 + 1) / 2)
    assert m["per_class"]["d"]["support"] == 0 and len(m["confusion_matrix"]) == 4
    assert "macro avg      1.000     0.750     0.833         4" in report.text_report(y_true, probs, classes)
    config = {"arch": "simple-cnn", "image_size": 32, "parameters": 1, "classes": classes, "data": "x",
              "n_train": 1, "n_val": 1, "seed": 1, "class_counts": {}, "train_seconds": 1, "machine": "m",
              "command": "c"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "metrics.json").write_text(json.dumps({"test": m}))
    assert "| 0.833 | a 0.50 |" in report.model_card(tmp_path)


def test_the_confusion_matrix_names_the_classes_as_the_site_does(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(report, "plot_confusion", lambda matrix, classes, path, title: drawn.append(classes))
    (tmp_path / "labels.json").write_text(json.dumps([{"slug": "kue_lapis", "name": "Kue Lapis Legit"}]))
    m = report.metrics(np.array([0, 1]), np.eye(2), ["kue_lapis", "kue_klepon"])

    report.record(tmp_path, ["kue_lapis", "kue_klepon"], {"test": m}, card=False)

    assert drawn == [["Kue Lapis Legit", "kue_klepon"]]  # a class labels.json does not name: its slug


def test_display_names_read_like_words():
    assert display_name("_") == "_"  # no words: as it is
    assert display_name("kue_putri_salju") == "Kue Putri Salju"
    assert display_name("cats") == "Cats"
    assert display_name("kue-lapis") == "Kue Lapis"
    assert display_name("Kue Putri Salju") == "Kue Putri Salju"  # a folder named with spaces
    assert display_name("kue putri  salju") == "Kue Putri Salju"
    assert display_name("BMW_M3") == "BMW M3"  # capitals the slug has are kept
    assert display_name("iPhone") == "IPhone"


@pytest.mark.parametrize("mode, key, cake", [("L", 0, 128), ("RGB", (0, 0, 0), (200, 30, 30))])
def test_a_png_colour_key_is_transparent_and_goes_on_white(mode, key, cake):
    img = Image.new(mode, (8, 8), key)  # background: the colour the PNG declares see-through
    img.paste(cake, (0, 0, 4, 8))
    png = io.BytesIO()
    img.save(png, "PNG", transparency=key)
    png.seek(0)

    pixels = load_image(png, 8)

    assert (pixels[:, 6:] == 255).all()
    assert (pixels[:, :2] == (cake if mode == "RGB" else (cake,) * 3)).all()


def run_main(main, argv, capsys) -> tuple[int, str]:
    """Run a command-line main; the exit status and what it wrote to stderr, progress bars left out."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    lines = capsys.readouterr().err.split("\n")
    return exited.value.code, "\n".join(line for line in lines if "\r" not in line)


@pytest.mark.parametrize("photos, options, message", [
    (None, [], "data folder not found"),
    ({}, [], "has 0 class folder(s)"),
    ({"cakes": 4}, [], "needs at least two <class>/ folders"),
    ({"a": 4, "b": 0}, [], "class folders without photos"),
    ({"a": 4, "b": 4, "lonely": 1}, [], "classes with a single photo: ['lonely']"),
    ({"a": 3, "b": 3}, ["--val-fraction", "0.9"], "lower the validation fraction (--val-fraction)"),
    ({"a": 3, "b": 3}, [], "6 photos cannot be decoded"),  # empty files named .jpg
])
def test_training_tells_what_is_wrong_with_the_data_without_a_traceback(tmp_path, capsys, photos,
                                                                         options, message):
    data_dir = tmp_path / "data"
    if photos is not None:
        data_dir.mkdir()
        photo_names(data_dir, photos)

    status, err = run_main(train.main, ["--data", str(data_dir), "--out", str(tmp_path / "out"),
                                        "--arch", "simple-cnn", "--image-size", "32", *options], capsys)

    assert status == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_training_on_a_file_instead_of_a_folder_says_so(tmp_path, capsys):
    (tmp_path / "photos.zip").write_bytes(b"PK")

    argv = ["--data", str(tmp_path / "photos.zip"), "--out", str(tmp_path / "out")]

    status, err = run_main(train.main, argv, capsys)

    assert status == 2 and err.startswith("error: data folder is a file, not a folder of <class>/ folders")


def test_a_wrong_finetune_from_layer_is_refused_before_any_training(tiny_data, tmp_path, capsys):
    status, err = run_main(train.main, [
        "--data", str(tiny_data), "--out", str(tmp_path / "out"), "--image-size", "32", "--weights", "",
        "--head-epochs", "1", "--max-steps", "1", "--finetune-from", "block_99_expand"], capsys)

    assert status == 2
    assert "error: --finetune-from 'block_99_expand' is not a layer" in err and "block_16_expand" in err
    assert "== head" not in capsys.readouterr().out + err  # no phase started


def untrained_folder(folder: Path, classes: list[str]) -> Path:
    """A model folder as export writes it, minus training: enough to load and to check data against."""
    folder.mkdir()
    networks.build("simple-cnn", len(classes), 32).save(folder / "model.keras")
    (folder / "labels.json").write_text(json.dumps([{"slug": c, "name": c} for c in classes]))
    (folder / "config.json").write_text(json.dumps({"image_size": 32}))
    return folder


def test_evaluation_tells_what_is_wrong_without_a_traceback(tmp_path, capsys):
    folder = untrained_folder(tmp_path / "model", ["a", "b"])
    known = photo_names(tmp_path / "known", {"a": 2, "b": 2})  # empty files: they cannot be decoded
    unknown = photo_names(tmp_path / "unknown", {"a": 2, "birds": 2})

    cases = [
        (["--model", str(tmp_path / "missing"), "--data", str(known)], "error: no model.keras in"),
        (["--model", str(folder), "--data", str(unknown)], "error: folders ['birds'] are not classes"),
        (["--model", str(folder), "--data", str(known)], "error: 4 photos cannot be decoded"),
    ]
    for argv, message in cases:
        status, err = run_main(evaluate.main, argv, capsys)
        assert status == 2 and err.startswith(message) and "Traceback" not in err, argv


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A simple-cnn trained from the command line (one of its classes is called `user`), its labels
    renamed by hand, then retrained both ways. Every retrain test reads this one run."""
    tmp = tmp_path_factory.mktemp("retrain")
    data_dir = write_photos(tmp / "data", ["cats", "dogs", "user"])
    argv = ["--data", str(data_dir), "--out", str(tmp / "base"), "--arch", "simple-cnn", "--image-size", "32",
            "--epochs", "1", "--max-steps", "1", "--batch-size", "8", "--val-fraction", "0.34"]
    train.main(argv)
    base = tmp / "base"
    edited = [{"slug": "cats", "name": "Kucing"}, {"slug": "dogs", "name": "Anjing"},
              {"slug": "user", "name": "Pengguna"}]
    (base / "labels.json").write_text(json.dumps(edited))
    extra = datasets.discover(data_dir)
    extra_pixels, extra_labels = datasets.load_pixels(extra, 32)[::6], extra.labels[::6]
    first_layer = networks.backbone_layers(load(base).model)[1]
    progress = []
    full = retrain.finetune(base, tmp / "full", data_dir, extra_pixels, extra_labels, epochs=2, max_steps=1,
                            finetune_from=first_layer, progress=lambda done, planned: progress.append(
                                (done, planned)))
    fast = retrain.refit_head(base, tmp / "fast", extra_pixels, extra_labels, epochs=1)
    return SimpleNamespace(argv=argv, base=base, edited=edited, full=full, fast=fast, progress=progress,
                           full_folder=tmp / "full", fast_folder=tmp / "fast", data_dir=data_dir,
                           extra=(extra_pixels, extra_labels), first_layer=first_layer)


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.mark.slow
def test_the_command_recorded_is_the_one_run(retrained):
    assert config_of(retrained.base)["command"] == "python -m training.train " + shlex.join(retrained.argv)


@pytest.mark.slow
def test_a_full_retrain_keeps_the_display_names_a_person_edited(retrained):
    assert json.loads((retrained.full_folder / "labels.json").read_text()) == retrained.edited
    assert [label.name for label in load(retrained.full_folder).labels] == ["Kucing", "Anjing", "Pengguna"]


@pytest.mark.slow
def test_a_full_retrain_records_its_own_phase_and_no_command_of_the_base(retrained):
    config = config_of(retrained.full_folder)

    (phase,) = config["phases"]
    assert phase["name"].startswith("full retrain") and phase["epochs_run"] == retrained.full["epochs_run"]
    assert "history" not in phase
    assert "command" not in config
    card = (retrained.full_folder / "MODEL_CARD.md").read_text()
    assert "Reproduce" not in card and "- Retrained (full) from `base` with 6 extra photos." in card


@pytest.mark.slow
def test_a_head_refit_records_its_own_phase_time_and_photos_and_no_command_of_the_base(retrained):
    config, base = config_of(retrained.fast_folder), config_of(retrained.base)

    assert config["phases"] == [{"name": "head refit on cached embeddings (1 epochs)", "epochs_run": 1}]
    assert config["train_seconds"] == retrained.fast["seconds"] != base["train_seconds"]
    assert config["n_train"] == retrained.fast["base_photos"] + retrained.fast["extra_photos"] == 24 + 6
    assert config["val_files"] == base["val_files"] and "command" not in config
    extra = retrained.fast["extra_per_class"]  # the base's photos plus the users'
    assert config["class_counts"] == {c: n + extra[c] for c, n in base["class_counts"].items()}
    assert config_of(retrained.full_folder)["class_counts"] == config["class_counts"]


@pytest.mark.slow
def test_a_full_retrain_reports_progress_after_every_epoch(retrained):
    assert retrained.full["epochs_run"] == 2
    assert retrained.progress == [(1, 2), (2, 2)]


@pytest.mark.slow
def test_a_head_refit_keeps_the_photos_of_a_class_called_user(retrained):
    cache = np.load(retrained.fast_folder / "embeddings.npz")

    # trained on the base photos but its validation ones; the cache keeps them all
    assert retrained.fast["base_photos"] == 36 - len(config_of(retrained.base)["val_files"]) == 24
    assert sum(str(f).startswith("user/") for f in cache["files"]) == 12


@pytest.mark.slow
def test_a_full_retrain_is_reproducible(retrained, tmp_path):
    """Seeded as the first training was: the same retrain gives the same network (dropout included)."""
    retrain.finetune(retrained.base, tmp_path / "again", retrained.data_dir, *retrained.extra, epochs=2,
                     max_steps=1, finetune_from=retrained.first_layer)

    first = load(retrained.full_folder).model.get_weights()
    again = load(tmp_path / "again").model.get_weights()
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))


@pytest.mark.slow
def test_a_full_retrain_validates_only_on_photos_the_base_did_not_train_on(retrained, tmp_path):
    """Photos added to the training folder since the base was trained go to training, and one of
    its validation photos that has gone is simply missing: carving the split afresh would move
    photos the base trained on into validation, where early stopping would measure on them."""
    base_config = config_of(retrained.base)
    grown = tmp_path / "data"
    write_photos(grown, ["cats", "dogs", "user"])
    for path in list(grown.rglob("*.*")):
        path.rename(path.with_name(f"new-{path.name}"))
    for path in retrained.data_dir.rglob("*.*"):
        (grown / path.relative_to(retrained.data_dir)).write_bytes(path.read_bytes())
    gone, *kept = base_config["val_files"]
    (grown / gone).unlink()

    summary = retrain.finetune(retrained.base, tmp_path / "grown", grown, *retrained.extra, epochs=1,
                               max_steps=1, finetune_from=retrained.first_layer)

    config = config_of(tmp_path / "grown")
    assert sorted(config["val_files"]) == sorted(kept)
    assert config["n_val"] == len(kept)
    assert config["n_train"] == base_config["n_train"] + 36 + len(retrained.extra[1])
    assert summary["base_photos"] == 36 + 36 - 1 - len(kept)  # trained on: not the validation photos
    assert summary["validation_photos"] == len(kept)


def test_a_retrain_on_another_folder_says_so(tmp_path):
    data = datasets.discover(write_photos(tmp_path / "other", ["cats", "dogs"]))

    with pytest.raises(datasets.DataError, match="none of the 2 validation photos .* are in"):
        datasets.split_as_before(data, ["cats/a.jpg", "dogs/b.jpg"], 0.2, 0)
    with pytest.raises(datasets.DataError, match="trained without a validation split"):
        datasets.split_as_before(data, [], 0.2, 0)
    train_idx, val_idx = datasets.split_as_before(data, ["cats/0.jpg", "gone/b.jpg"], 0.2, 0)
    assert [data.files[i] for i in val_idx] == ["cats/0.jpg"] and len(train_idx) == 23


def test_calibration_compares_the_confidence_shown_with_how_often_it_is_right():
    # 10 photos shown at 0.8 of which 8 are right (honest), 10 shown at 0.95 of which 5 are (not)
    probs = np.array([[0.8, 0.2]] * 10 + [[0.05, 0.95]] * 10)
    truth = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 5)

    c = report.calibration(truth, probs, unsure_below=0.9)

    bins = [(round(b["from"], 1), b["n"], round(b["accuracy"], 2)) for b in c["bins"]]
    assert bins == [(0.7, 10, 0.8), (0.9, 10, 0.5)]
    assert c["ece"] == pytest.approx(0.5 * 0 + 0.5 * 0.45)
    assert (c["unsure"], c["unsure_wrong"], c["wrong"], c["sure_accuracy"]) == (10, 2, 7, 0.5)
