"""The model the repository ships: it loads offline and recognises real cake photos."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import migrated_back
from training.preprocess import load_image
from training.runtime import load

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "kue-mobilenetv2"
PHOTOS = Path(__file__).resolve().parent / "photos"
SAMPLES = sorted(PHOTOS.glob("*/*.jpg"))
KUE = ["kue_dadar_gulung", "kue_kastengel", "kue_klepon", "kue_lapis", "kue_lumpur",
       "kue_putri_salju", "kue_risoles", "kue_serabi"]


@pytest.fixture(scope="module")
def classifier():
    return load(SHIPPED)


def test_it_knows_the_eight_cakes_by_slug_and_display_name(classifier):
    assert classifier.slugs == KUE
    assert classifier.labels[5].name == "Kue Putri Salju"
    assert classifier.image_size == 224


@pytest.mark.django_db
def test_its_registered_fingerprint_is_that_of_its_files():
    """Files changed in place would be refused by the workers of every site that registered them:
    a changed model needs a new folder and version (or a migration recording its new fingerprint)."""
    from classifier.models import ModelVersion
    from training.runtime import fingerprint

    assert ModelVersion.objects.get(name="kue-mobilenetv2").fingerprint == fingerprint(SHIPPED)


def test_every_class_has_sample_photos():
    assert sorted({p.parent.name for p in SAMPLES}) == KUE


@pytest.mark.parametrize("photo", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_it_recognises_the_sample_photo(classifier, photo):
    probs = classifier.classify(photo)

    assert np.isclose(probs.sum(), 1.0)
    assert classifier.slugs[int(probs.argmax())] == photo.parent.name


def test_its_folder_records_the_benchmark_and_a_head_refit_cache(classifier):
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    config = json.loads((SHIPPED / "config.json").read_text())
    cache = np.load(SHIPPED / "embeddings.npz")

    assert metrics["test"]["n"] == 162
    assert set(metrics["test"]["per_class"]) == set(KUE)
    assert cache["embeddings"].dtype == np.float16
    assert cache["embeddings"].shape == (sum(config["class_counts"].values()), 1280)
    assert np.bincount(cache["labels"]).tolist() == [config["class_counts"][k] for k in KUE]


def test_the_litert_file_the_worker_runs_agrees_with_the_keras_network(classifier):
    pixels = np.stack([load_image(p) for p in SAMPLES])

    keras_probs = np.asarray(classifier.model(pixels.astype(np.float32), training=False))

    assert classifier.uses_litert
    assert np.allclose(classifier.predict_pixels(pixels), keras_probs, atol=1e-5)


@pytest.mark.parametrize("photo", SAMPLES[::4], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_heat_map_is_grad_cam_of_the_keras_network_for_the_predicted_cake(classifier, photo):
    """Grad-CAM done the textbook way (gradients of the class score through the Keras network)
    against the worker's map from the LiteRT pass and the head's weights."""
    import tensorflow as tf

    from training.model import FEATURES, HEAD

    model = classifier.model
    to_map = tf.keras.Model(model.input, model.get_layer(FEATURES).input)
    kernel, bias = model.get_layer(HEAD).get_weights()
    pixels = load_image(photo)[None].astype(np.float32)

    probs, heatmap = classifier.classify_with_heatmap(photo)
    with tf.GradientTape() as tape:
        feature_map = to_map(pixels, training=False)
        tape.watch(feature_map)
        score = (tf.reduce_mean(feature_map, axis=(1, 2)) @ kernel + bias)[0, int(probs.argmax())]
    weights = tf.reduce_mean(tape.gradient(score, feature_map), axis=(1, 2))[0]
    grad_cam = np.maximum(np.asarray(tf.reduce_sum(feature_map[0] * weights, axis=-1)), 0)

    assert heatmap.shape == grad_cam.shape == (7, 7) and heatmap.max() == pytest.approx(1.0)
    assert np.allclose(heatmap, grad_cam / grad_cam.max(), atol=1e-3)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("files", ["an earlier release's", "nobody's"])
def test_an_installation_that_kept_an_earlier_shipped_model_classifies_after_the_upgrade(
        settings, tmp_path, monkeypatch, files):
    """A Docker installation keeps the model files of the image it first started with (a volume):
    its shipped model is an earlier release's, and must still be served under its own figures.
    Files no release shipped stay refused."""
    import importlib
    import shutil

    from classifier import inference
    from classifier.models import ModelVersion
    from training.runtime import fingerprint

    repair = importlib.import_module("classifier.migrations.0017_shipped_model_as_its_files")
    settings.MODELS_DIR = tmp_path
    folder = shutil.copytree(SHIPPED, tmp_path / "kue-mobilenetv2")
    # Files that differ from this release's, as an earlier release's do (the same labels, written
    # otherwise; other figures), loadable all the same.
    (folder / "labels.json").write_text(json.dumps(json.loads((folder / "labels.json").read_text())))
    (folder / "metrics.json").write_text(json.dumps({"test": {"top1": 0.5}}))
    if files == "an earlier release's":
        monkeypatch.setitem(repair.RELEASED, "kue-mobilenetv2", {*repair.RELEASED["kue-mobilenetv2"],
                                                                 fingerprint(folder)})
    with migrated_back("0016_model_versions_order_name_fingerprint"):
        pass  # (and forward again: 0017 registers the folder)

    version = ModelVersion.objects.get(name="kue-mobilenetv2")
    monkeypatch.setattr(inference, "_loaded", None)  # a worker started after the upgrade
    if files == "nobody's":
        assert version.fingerprint == fingerprint(SHIPPED)
        with pytest.raises(inference.ModelUnavailable):
            inference.classify(version.pk, str(PHOTOS / "kue_lapis" / "108.jpg"))
    else:
        assert version.fingerprint == fingerprint(folder) and version.metrics == {"test": {"top1": 0.5}}
        assert inference.classify(version.pk, str(PHOTOS / "kue_lapis" / "108.jpg")).label == "kue_lapis"


def test_install_models_copies_the_shipped_folders_a_models_folder_lacks_and_replaces_none(
        settings, tmp_path):
    """Docker keeps MODELS_DIR in a volume: what the image ships reaches it this way, before migrate."""
    from django.core.management import call_command

    from training.runtime import fingerprint

    settings.MODELS_DIR = tmp_path / "models"  # a new volume: not even the folder yet
    call_command("install_models")
    assert fingerprint(settings.MODELS_DIR / "kue-mobilenetv2") == fingerprint(SHIPPED)
    assert [p.name for p in settings.MODELS_DIR.iterdir()] == ["kue-mobilenetv2"]  # nothing partial

    kept = settings.MODELS_DIR / "kue-mobilenetv2" / "labels.json"
    kept.write_text("[]")  # an earlier release's files: versions are registered from them
    call_command("install_models")
    assert kept.read_text() == "[]"


def test_two_web_processes_installing_the_models_at_once_both_start(settings, tmp_path):
    """Two web containers start together: the second finds the folder installed by the first."""
    from concurrent.futures import ThreadPoolExecutor

    from classifier import services
    from training.runtime import fingerprint

    settings.MODELS_DIR = tmp_path / "models"
    with ThreadPoolExecutor(4) as pool:
        installed = list(pool.map(lambda _: services.shipped_models_install(), range(4)))

    assert sorted(name for names in installed for name in names) == ["kue-mobilenetv2"]  # (and no error)
    assert [p.name for p in settings.MODELS_DIR.iterdir()] == ["kue-mobilenetv2"]
    assert fingerprint(settings.MODELS_DIR / "kue-mobilenetv2") == fingerprint(SHIPPED)


@pytest.mark.django_db
def test_a_trainer_of_an_earlier_release_still_registers_its_version_while_this_one_migrates():
    """Its INSERT names no fingerprint column (it had none): the database fills in 'not checked'."""
    from django.db import connection
    from django.utils import timezone

    from classifier.models import ModelVersion

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO classifier_modelversion (name, path, labels, metrics, is_active, "
                       "created) VALUES (%s, %s, %s, %s, %s, %s)",
                       ["old+run1", "old+run1", "[]", "{}", False, timezone.now()])

    assert ModelVersion.objects.get(name="old+run1").fingerprint == ""
