"""Uploading photos on the website: stored at once, queued, and bad files refused cleanly."""

import hashlib
import io

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from classifier import images, services, tasks
from classifier.models import Photo
from tests.conftest import api_token, make_photo, png_bytes, sample_photo, upload_of

pytestmark = pytest.mark.django_db(transaction=False)


def stored_files(settings) -> list:
    root = settings.MEDIA_ROOT
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_one_photo_is_stored_queued_and_opens_its_page(client, user, enqueued, settings,
                                                       django_capture_on_commit_callbacks):
    client.force_login(user)
    path = sample_photo("kue_klepon")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("upload"), {"photos": [upload_of(path)]})

    photo = Photo.objects.get()
    assert response.status_code == 302 and response["Location"] == photo.get_absolute_url()
    assert photo.owner == user and photo.status == "queued"
    assert photo.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with Image.open(path) as img:
        assert (photo.width, photo.height) == img.size
    assert path.name not in photo.image.name  # stored under a generated name
    assert enqueued == [photo.pk]
    page = client.get(response["Location"]).content.decode()
    assert "Waiting…" in page and "data-pending" in page


def test_several_photos_at_once_land_in_the_gallery(client, user, enqueued,
                                                    django_capture_on_commit_callbacks):
    client.force_login(user)
    files = [upload_of(sample_photo(c)) for c in ("kue_lapis", "kue_serabi", "kue_risoles")]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("upload"), {"photos": files})

    assert response.status_code == 302 and response["Location"] == reverse("gallery")
    assert Photo.objects.filter(owner=user).count() == 3
    assert sorted(enqueued) == sorted(Photo.objects.values_list("pk", flat=True))


def test_good_photos_are_kept_when_one_file_of_the_batch_is_bad(client, user, enqueued):
    client.force_login(user)
    files = [upload_of(sample_photo()), SimpleUploadedFile("notes.jpg", b"just text", "image/jpeg")]

    response = client.post(reverse("upload"), {"photos": files}, follow=True)

    assert Photo.objects.count() == 1
    assert "notes.jpg: The file is not an image we can read." in response.content.decode()


def truncated_jpeg() -> bytes:
    data = sample_photo().read_bytes()
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")  # tiny file, 144 megapixels
    return buf.getvalue()


@pytest.mark.parametrize("name, content, message", [
    ("empty.jpg", b"", "The file is empty."),
    ("letter.jpg", b"%PDF-1.4 not a photo at all", "The file is not an image we can read."),
    ("cut.jpg", None, "The image is truncated or corrupt."),
    ("bomb.png", "bomb", "megapixels are accepted"),
    ("vector.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "The file is not an image we can read."),
    ("cut.heic", "cut heic", "The image is truncated or corrupt."),
    ("cut.avif", "cut avif", "The image is truncated or corrupt."),
])
def test_a_bad_file_is_refused_with_a_reason_and_leaves_nothing_behind(
    client, user, enqueued, settings, name, content, message
):
    client.force_login(user)
    content = {None: truncated_jpeg, "bomb": bomb_png,
               "cut heic": lambda: heic(sample_photo())[:-500],
               "cut avif": lambda: avif(sample_photo())[:-500]}.get(content, lambda: content)()

    response = client.post(reverse("upload"), {"photos": [SimpleUploadedFile(name, content)]}, follow=True)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert Photo.objects.count() == 0 and enqueued == []
    assert stored_files(settings) == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("limit", [0, 10_000], ids=["checked-at-commit", "found-by-the-lock"])
def test_an_upload_whose_commit_fails_leaves_no_file(user, enqueued, settings, django_user_model, limit):
    """An account deleted while its upload was being stored: with no photo limit, foreign keys
    find it at commit; with one, locking the account to count its photos finds it gone."""
    settings.MAX_PHOTOS_PER_ACCOUNT = limit
    django_user_model.objects.filter(pk=user.pk).delete()

    with pytest.raises(PermissionDenied, match="This account was deleted while the photos were being stored"):
        services.photo_create(owner=user, upload=upload_of(sample_photo()))

    assert Photo.objects.count() == 0 and stored_files(settings) == [] and enqueued == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_upload_whose_publishing_fails_after_the_commit_keeps_its_photo(user, settings, monkeypatch):
    """The broker answers with an error kombu does not call 'unreachable' (Redis out of memory, a
    channel error): the photo is stored whole, and the sweep will send it."""
    from kombu.exceptions import ChannelError

    def broker_refuses(*args, **kwargs):
        raise ChannelError("OOM command not allowed when used memory > 'maxmemory'")

    monkeypatch.setattr(tasks.classify_photo, "apply_async", broker_refuses)

    photo = services.photo_create(owner=user, upload=upload_of(sample_photo()))

    photo.refresh_from_db()
    assert photo.status == "queued" and len(stored_files(settings)) == 2
    with photo.image.open("rb") as f:
        assert f.read() == sample_photo().read_bytes()


def test_an_upload_to_a_broker_that_hangs_waits_on_it_once_not_once_a_photo(client, user, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
    """Each try on a hung broker costs its timeout (3.5 s): twenty photos would hold the request
    for over a minute, past the proxy's patience. The photos are stored; the sweep sends them."""
    from kombu.exceptions import OperationalError

    tries = []

    def hung(args, **kwargs):
        tries.append(args[0])
        raise OperationalError("timed out")

    monkeypatch.setattr(tasks.classify_photo, "apply_async", hung)
    client.force_login(user)
    photos = [upload_of(sample_photo(cls)) for cls in ("kue_lapis", "kue_klepon", "kue_lumpur")]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/photos/", {"files": photos})
    first = Photo.objects.order_by("pk").first()

    assert response.status_code == 201 and Photo.objects.filter(status="queued").count() == 3
    assert tries == [first.pk]  # the other two not even tried
    sent = []
    monkeypatch.setattr(tasks.send_email_confirmation, "apply_async", lambda args, **_: sent.append(args))
    assert tasks.enqueue(tasks.send_email_confirmation, 7) and sent == [(7,)]  # no sweep sends it: tried
    tasks.broker_down_until = 0.0  # a few seconds later: photos are tried again
    assert not tasks.enqueue(tasks.classify_photo, first.pk, swept=True) and tries == [first.pk, first.pk]


def test_a_file_over_the_size_limit_is_refused(client, user, enqueued, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    client.force_login(user)

    response = client.post(reverse("upload"), {"photos": [upload_of(sample_photo())]})

    assert response.status_code == 400
    assert "The file is larger than 1000\xa0bytes." in response.content.decode()
    assert Photo.objects.count() == 0


def test_a_file_at_the_size_limit_is_taken_and_one_byte_more_is_refused(client, user, enqueued, settings):
    data = sample_photo().read_bytes()
    settings.MAX_UPLOAD_BYTES = len(data)
    client.force_login(user)

    at_limit = client.post(reverse("upload"), {"photos": [SimpleUploadedFile("cake.jpg", data)]})
    settings.MAX_UPLOAD_BYTES = len(data) - 1
    over = client.post(reverse("upload"), {"photos": [SimpleUploadedFile("cake.jpg", data)]})

    assert at_limit.status_code == 302
    assert over.status_code == 400
    assert "cake.jpg: The file is larger than" in over.content.decode()
    assert Photo.objects.count() == 1


def test_a_valid_image_with_a_wrong_extension_is_accepted_by_its_content(client, user, enqueued):
    client.force_login(user)

    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("cake.gif", png_bytes())]})

    photo = Photo.objects.get()
    assert photo.image_format == "png" and photo.image.name.endswith(".png")


def test_too_many_files_at_once_are_refused(client, user, enqueued, settings):
    settings.MAX_FILES_PER_UPLOAD = 2
    client.force_login(user)
    files = [SimpleUploadedFile(f"{i}.png", png_bytes()) for i in range(3)]

    response = client.post(reverse("upload"), {"photos": files})

    assert response.status_code == 400
    assert "At most 2 photos at once." in response.content.decode()
    assert Photo.objects.count() == 0


def test_exactly_as_many_files_as_the_limit_are_taken(client, user, enqueued, settings):
    settings.MAX_FILES_PER_UPLOAD = 3
    client.force_login(user)
    files = [SimpleUploadedFile(f"{i}.png", png_bytes()) for i in range(3)]

    response = client.post(reverse("upload"), {"photos": files})

    assert response.status_code == 302 and response["Location"] == reverse("gallery")
    assert Photo.objects.count() == 3


def large_jpeg(size=(1600, 1200)) -> tuple[Image.Image, bytes]:
    """A real cake photo blown up to a camera-like size."""
    with Image.open(sample_photo("kue_klepon")) as img:
        big = img.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    return big, buffer.getvalue()


def test_a_large_photo_gets_a_faithful_320_pixel_thumbnail(client, user, enqueued):
    client.force_login(user)
    big, data = large_jpeg()

    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("camera.jpg", data)]})

    photo = Photo.objects.get()
    with Image.open(photo.thumbnail.path) as thumb:
        pixels = np.asarray(thumb.convert("RGB"), dtype=np.int16)
    reference = np.asarray(big.resize((320, 240), Image.Resampling.LANCZOS), dtype=np.int16)
    assert (photo.width, photo.height) == (1600, 1200) and pixels.shape == (240, 320, 3)
    assert np.abs(pixels - reference).mean() < 4  # decoded small, yet the same picture


def test_a_phone_sized_photo_is_shown_on_its_page_as_a_copy_that_size_with_the_photo_a_click_away(
        client, user, enqueued):
    from PIL import ImageCms

    big, _ = large_jpeg((4000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 6  # taken with the phone upright
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    sent = io.BytesIO()
    big.save(sent, "JPEG", quality=92, exif=exif, icc_profile=profile)
    client.force_login(user)

    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("IMG_1.jpg", sent.getvalue())]})

    photo = Photo.objects.get()
    page = client.get(photo.get_absolute_url()).content.decode()
    assert f'<img src="/photos/{photo.pk}/display/"' in page and f'href="/photos/{photo.pk}/image/"' in page
    shown = b"".join(client.get(f"/photos/{photo.pk}/display/").streaming_content)
    assert len(shown) < len(sent.getvalue()) / 3  # (a real phone photo, noisier, shrinks more)
    with Image.open(io.BytesIO(shown)) as copy:
        assert copy.size == (1500, 2000) == (photo.width // 2, photo.height // 2)  # upright
        assert copy.info["icc_profile"] == profile and not copy.getexif()
        pixels = np.asarray(copy.convert("RGB"), dtype=np.int16)
    reference = big.transpose(Image.Transpose.ROTATE_270).resize((1500, 2000), Image.Resampling.LANCZOS)
    assert np.abs(pixels - np.asarray(reference, dtype=np.int16)).mean() < 4
    assert client.get(f"/photos/{photo.pk}/display/")["Content-Disposition"] == 'inline; filename="IMG_1.jpg"'
    made = Photo.objects.get().display.name  # made once, on the first request, and kept
    assert made and b"".join(client.get(f"/photos/{photo.pk}/display/").streaming_content) == shown
    assert Photo.objects.get().display.name == made


@pytest.mark.parametrize("size", [(3199, 2399), (2048, 1536)])
def test_a_photo_less_than_twice_the_pages_size_is_shown_as_a_copy_of_that_size(client, user, enqueued, size):
    """No whole factor shrinks it: kept whole, a phone downloaded three times what it shows. (A copy
    of up to 2000 px is kept as it comes: a phone's 4000 px JPEG decoded at half its size.)"""
    big, sent = large_jpeg(size)
    client.force_login(user)
    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("IMG_2.jpg", sent)]})
    photo = Photo.objects.get()

    shown = b"".join(client.get(f"/photos/{photo.pk}/display/").streaming_content)

    with Image.open(io.BytesIO(shown)) as copy:
        assert copy.size == (1600, 1200)
        pixels = np.asarray(copy.convert("RGB"), dtype=np.int16)
    reference = big.resize((1600, 1200), Image.Resampling.LANCZOS)
    assert np.abs(pixels - np.asarray(reference, dtype=np.int16)).mean() < 4


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_photo_that_no_reduced_decoding_shrinks_is_shown_at_most_2000_px_wide(fmt):
    """A PNG or WebP of 4001 to 4799 px: halved, it is still over 2000 px (up to 2400)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4799, 3599), "red").save(buffer, fmt)

    with Image.open(buffer) as img, Image.open(images.make_display(img)) as copy:
        assert copy.size == (1600, 1200)


def test_two_requests_making_a_photos_display_copy_at_once_keep_one_and_its_deletion_takes_it(
        client, user, enqueued, settings, django_capture_on_commit_callbacks):
    _, data = large_jpeg((4000, 3000))
    photo = services.photo_create(owner=user, upload=SimpleUploadedFile("IMG_2.jpg", data))
    first, second = Photo.objects.get(pk=photo.pk), Photo.objects.get(pk=photo.pk)  # both read none

    services.photo_display(first)
    services.photo_display(second)

    displays = settings.MEDIA_ROOT / "displays"
    assert first.display.name == second.display.name and len(list(displays.iterdir())) == 1
    with django_capture_on_commit_callbacks(execute=True):
        Photo.objects.get(pk=photo.pk).delete()
    assert list(displays.iterdir()) == []
    # Deleted by a request that read it before its page made its copy (an account's deletion reads
    # all its photos first): the copy goes too.
    _, data = large_jpeg((4000, 3000))
    photo = services.photo_create(owner=user, upload=SimpleUploadedFile("IMG_3.jpg", data))
    read_before = Photo.objects.get(pk=photo.pk)
    services.photo_display(Photo.objects.get(pk=photo.pk))
    with django_capture_on_commit_callbacks(execute=True):
        read_before.delete()
    assert list(displays.iterdir()) == []


def test_a_display_copy_the_full_disk_refuses_leaves_the_page_showing_the_photo_itself(
        client, user, enqueued, disk_full_for, settings):
    _, data = large_jpeg((4000, 3000))
    photo = services.photo_create(owner=user, upload=SimpleUploadedFile("IMG_4.jpg", data))
    disk_full_for("displays/")
    client.force_login(user)

    page = client.get(photo.get_absolute_url())
    shown = client.get(f"/photos/{photo.pk}/display/")

    assert page.status_code == 200 and f'<img src="/photos/{photo.pk}/display/"' in page.content.decode()
    assert shown.status_code == 200 and b"".join(shown.streaming_content) == data
    assert not Photo.objects.get().display and not (settings.MEDIA_ROOT / "displays").exists()


def test_a_photo_no_larger_than_its_page_shows_is_its_own_display_copy(client, user, enqueued):
    client.force_login(user)
    path = sample_photo("kue_lapis")

    client.post(reverse("upload"), {"photos": [upload_of(path)]})

    photo = Photo.objects.get()
    assert not photo.display
    assert b"".join(client.get(f"/photos/{photo.pk}/display/").streaming_content) == path.read_bytes()
    assert f'href="/photos/{photo.pk}/image/"' not in client.get(photo.get_absolute_url()).content.decode()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_small_photo_stored_sideways_is_shown_upright_whatever_its_format(client, user, enqueued, fmt):
    """Its pixels are kept as sent, with the turn as a tag: every browser obeys a JPEG's, but
    Chromium shows a WebP as stored (sideways, the heat map off the cake). Its page and the API's
    display_url show an upright copy of any other format."""
    client.force_login(user)
    sent = with_place(fmt)
    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("IMG_0042", sent)]})
    photo = Photo.objects.get()

    shown = b"".join(client.get(f"/photos/{photo.pk}/display/").streaming_content)
    api = APIClient()
    api.force_authenticate(user)
    display_url = api.get(f"/api/photos/{photo.pk}/").json()["display_url"]

    with Image.open(io.BytesIO(shown)) as img, Image.open(sample_photo("kue_lapis")) as original:
        if fmt == "JPEG":
            assert not photo.display and img.getexif().get(0x0112) == 6  # the browser turns it
        else:
            assert photo.display and img.format == "JPEG" and img.getexif().get(0x0112, 1) == 1
            assert img.size == (photo.width, photo.height) == original.size[::-1]
            upright = np.asarray(original.convert("RGB").transpose(Image.Transpose.ROTATE_270), dtype=float)
            assert np.abs(np.asarray(img.convert("RGB"), dtype=float) - upright).mean() < 4
    assert b"".join(api.get(display_url).streaming_content) == shown


def test_the_upload_pages_numbers_are_read_by_its_script_whatever_the_sites_language(client, user, settings):
    """A site set to Indonesian writes 0,6 for 0.6 in its pages: the script would read no number, and
    never say "Not sure"."""
    settings.LANGUAGE_CODE = "id"
    settings.UNSURE_BELOW, settings.MAX_UPLOAD_BYTES = 0.6, 20_000_000
    client.force_login(user)

    page = client.get(reverse("upload")).content.decode()

    assert 'data-unsure-below="0.6" data-max-bytes="20000000"' in page


def heic(path, size: tuple[int, int] | None = None, **kwargs) -> bytes:
    """The photo (resized to `size`) as a phone saves it: HEIC (pillow-heif's encoder)."""
    out = io.BytesIO()
    with Image.open(path) as img:
        (img.resize(size) if size else img).save(out, "HEIF", quality=85, **kwargs)
    return out.getvalue()


def test_a_heic_photo_from_a_phone_is_stored_upright_as_a_jpeg_a_browser_shows_and_classified(
        client, user, enqueued):
    from classifier import tasks

    exif = Image.Exif()
    exif[0x0112] = 6  # taken with the phone upright: the picture is stored turned
    client.force_login(user)

    response = client.post(reverse("upload"), {"photos": [SimpleUploadedFile(
        "IMG_0042.HEIC", heic(sample_photo("kue_dadar_gulung"), exif=exif.tobytes()))]})

    photo = Photo.objects.get()
    assert response.status_code == 302 and photo.original_name == "IMG_0042.HEIC"
    with Image.open(photo.image.path) as stored, Image.open(sample_photo("kue_dadar_gulung")) as original:
        assert stored.format == "JPEG" and photo.image_format == "jpg"
        assert stored.size == (photo.width, photo.height) == original.size[::-1]  # upright
        assert not stored.getexif()  # nor where it was taken
    assert client.get(reverse("photo-image", args=[photo.pk]))["Content-Type"] == "image/jpeg"
    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_dadar_gulung"


def phone_heic(**kwargs) -> bytes:
    """A 2000x1500 HEIC as phones write it: with a small thumbnail of its own inside."""
    return heic(sample_photo("kue_dadar_gulung"), (2000, 1500), thumbnails=[400], **kwargs)


def test_a_phone_heic_is_stored_whole_not_as_the_thumbnail_inside_it():
    checked = images.validate_image(SimpleUploadedFile("IMG.HEIC", phone_heic()))

    with Image.open(checked.converted) as stored:
        assert stored.size == (checked.width, checked.height) == (2000, 1500)


def test_a_heic_whose_picture_is_corrupt_is_refused_though_its_thumbnail_is_whole():
    data = phone_heic()
    start = data.find(b"mdat") + 4  # the picture comes first, the thumbnail last
    broken = data[:start] + b"\xff" * 50 + data[start + 50:]

    with pytest.raises(ValidationError, match="The image is truncated or corrupt."):
        images.validate_image(SimpleUploadedFile("IMG.HEIC", broken))


def test_a_heic_keeps_its_colour_profile_so_browsers_show_its_colours():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # a phone's is Display P3

    checked = images.validate_image(SimpleUploadedFile("IMG.HEIC", phone_heic(icc_profile=profile)))

    with Image.open(checked.converted) as stored:
        assert stored.info["icc_profile"] == profile


def avif(path, **kwargs) -> bytes:
    """The photo as a browser saves a picture, or some phones a photo: AVIF (Pillow's encoder, libavif)."""
    out = io.BytesIO()
    with Image.open(path) as img:
        img.save(out, "AVIF", quality=80, **kwargs)
    return out.getvalue()


def test_an_avif_photo_is_stored_upright_as_a_jpeg_every_browser_shows_and_classified(client, user, enqueued):
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter: written as the AVIF's own turn ('irot')
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    client.force_login(user)

    response = client.post(reverse("upload"), {"photos": [SimpleUploadedFile(
        "cake.avif", avif(sample_photo("kue_dadar_gulung"), exif=exif.tobytes(), icc_profile=profile))]})

    photo = Photo.objects.get()
    assert response.status_code == 302 and photo.original_name == "cake.avif"
    with Image.open(photo.image.path) as stored, Image.open(sample_photo("kue_dadar_gulung")) as original:
        assert stored.format == "JPEG" and photo.image_format == "jpg"
        assert stored.size == (photo.width, photo.height) == original.size[::-1]  # upright
        turned = original.convert("RGB").transpose(Image.Transpose.ROTATE_270)
        assert np.abs(np.asarray(stored, dtype=float) - np.asarray(turned, dtype=float)).mean() < 8
        assert not stored.getexif() and stored.info["icc_profile"] == profile
    assert client.get(reverse("photo-image", args=[photo.pk]))["Content-Type"] == "image/jpeg"
    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_dadar_gulung"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_heic_and_an_avif_sent_to_gunicorn_are_decoded_in_their_own_process_and_stored(
        settings, tmp_path, user):
    """The web server starts the process that decodes them as the tests do (its Python, the
    project's folder); the broker is down here, which an upload does not need."""
    import requests

    from tests.processes import app_env, free_port, require_services, start_web

    require_services()
    port = free_port()
    env = app_env(settings, tmp_path, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    token = api_token(user)
    sent = [("files", ("IMG_0042.HEIC", heic(sample_photo()), "image/heic")),
            ("files", ("cake.avif", avif(sample_photo()), "image/avif"))]
    web = start_web(env, tmp_path / "web.log", port)
    try:
        response = requests.post(f"http://127.0.0.1:{port}/api/photos/", files=sent,
                                 headers={"Authorization": f"Token {token}"}, timeout=60)
    finally:
        web.stop()

    assert response.status_code == 201, web.tail()
    results = response.json()["results"]
    assert [r["errors"] for r in results] == [[], []], web.tail()
    with Image.open(sample_photo()) as original:
        for result in results:
            photo = Photo.objects.get(pk=result["photo"]["id"])
            with Image.open(photo.image.path) as stored:
                assert stored.format == "JPEG" and stored.size == original.size == (photo.width, photo.height)


def test_a_large_jpeg_cut_short_is_refused_though_it_is_decoded_small(client, user, enqueued, settings):
    client.force_login(user)
    _, data = large_jpeg()
    cut = SimpleUploadedFile("cut.jpg", data[: len(data) * 3 // 4])

    response = client.post(reverse("upload"), {"photos": [cut]})

    assert response.status_code == 400 and "The image is truncated or corrupt." in response.content.decode()
    assert Photo.objects.count() == 0 and stored_files(settings) == []


def test_the_website_form_shares_the_apis_upload_rate(client, user, enqueued, monkeypatch):
    from rest_framework.test import APIClient
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "uploads": "2/minute"})
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    client.force_login(user)

    through_api = api.post("/api/photos/", {"files": [SimpleUploadedFile("a.png", png_bytes())]},
                           format="multipart")
    codes = [client.post(reverse("upload"), {"photos": [SimpleUploadedFile(f"{i}.png", png_bytes())]}
                         ).status_code for i in range(2)]

    assert through_api.status_code == 201 and codes == [302, 429]
    refused = client.post(reverse("upload"), {"photos": [SimpleUploadedFile("c.png", png_bytes())]})
    assert int(refused["Retry-After"]) > 0
    assert "more uploads than we take in a minute" in refused.content.decode()
    assert Photo.objects.count() == 2


def with_place(fmt: str, **options) -> bytes:
    """A photo as a phone or an editor saves it: turned (EXIF orientation 6), with the place it was
    taken (GPS), the camera, XMP and, where the format has them, a comment and text; a JPEG also
    with a motion photo's video after its end."""
    from PIL import ExifTags, ImageCms

    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Kamera Braga"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "S", (6.0, 55.0, 1.0)
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = "E", (107.0, 36.0, 33.0)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>Jl. Braga, Bandung</rdf:RDF></x:xmpmeta>'
    out = io.BytesIO()
    with Image.open(sample_photo("kue_lapis")) as img:
        if fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            text = PngInfo()
            text.add_text("Location", "Jl. Braga, Bandung")
            options["pnginfo"] = text
        if fmt in ("JPEG", "MPO"):
            options["comment"] = "Jl. Braga, Bandung"
        if fmt == "MPO":  # a second picture (a depth map), with its own EXIF
            options.update(save_all=True, append_images=[img.convert("L")])
        img.save(out, fmt, exif=exif, xmp=xmp, icc_profile=profile, **options)
    return out.getvalue() + (b"\x00\x00ftypmp42 Jl. Braga, Bandung" if fmt == "JPEG" else b"")


@pytest.mark.parametrize("fmt, options", [("JPEG", {}), ("JPEG", {"progressive": True}), ("MPO", {}),
                                          ("PNG", {}), ("WEBP", {"quality": 80}),
                                          ("WEBP", {"lossless": True})])
def test_a_photo_is_stored_without_where_it_was_taken_but_with_its_pixels_turn_and_colours(
        client, user, enqueued, fmt, options):
    sent = with_place(fmt, **options)
    client.force_login(user)

    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("IMG_0042", sent)]})

    photo = Photo.objects.get()
    kept = b"".join(client.get(reverse("photo-image", args=[photo.pk])).streaming_content)
    assert b"Braga" not in kept and b"ftyp" not in kept
    with Image.open(io.BytesIO(kept)) as stored, Image.open(io.BytesIO(sent)) as original:
        assert dict(stored.getexif()) == {0x0112: 6}  # the turn, and nothing else: no place, no camera
        assert not stored.getexif().get_ifd(0x8825)
        assert stored.info["icc_profile"] == original.info["icc_profile"]
        assert stored.format == ("JPEG" if fmt == "MPO" else fmt)  # (an MPO's first picture)
        assert np.array_equal(np.asarray(stored), np.asarray(original))  # not decoded and saved again
    assert (photo.width, photo.height) == Image.open(sample_photo("kue_lapis")).size[::-1]
    assert photo.sha256 == hashlib.sha256(sent).hexdigest()  # of the file as sent, to know it again


def test_photos_stored_with_their_metadata_before_are_stored_again_without_it(user, settings):
    from django.core.files.base import ContentFile
    from django.core.management import call_command

    sent = with_place("JPEG")
    photo = make_photo(user, "done", "kue_lapis")  # as an upload of the release before stored it
    old = photo.image.name
    Photo.objects.filter(pk=photo.pk).update(image_format="jpg")
    photo.image.storage.delete(old)
    photo.image.storage.save(old, ContentFile(sent))
    gif, commented = make_photo(user, "done", "kue_lapis"), io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(commented, "GIF", comment=b"Jl. Braga, Bandung")
    Photo.objects.filter(pk=gif.pk).update(image_format="gif")
    gif.image.storage.delete(gif.image.name)
    gif.image.storage.save(gif.image.name, ContentFile(commented.getvalue()))
    untouched = make_photo(user, "done", "kue_lapis")  # a PNG without metadata
    out = io.StringIO()

    call_command("strip_metadata", stdout=out)
    call_command("strip_metadata", stdout=out)  # (once is enough)

    assert out.getvalue() == ("2 photos stored again without their metadata\n"
                              "0 photos stored again without their metadata\n")
    with Photo.objects.get(pk=gif.pk).image.open("rb") as stored:
        assert b"Braga" not in stored.read()
    photo = Photo.objects.get(pk=photo.pk)
    with photo.image.open("rb") as stored:
        kept = stored.read()
    assert photo.image.name != old and not photo.image.storage.exists(old)
    assert b"Braga" not in kept and dict(Image.open(io.BytesIO(kept)).getexif()) == {0x0112: 6}
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(kept))), np.asarray(Image.open(io.BytesIO(sent))))
    assert Photo.objects.get(pk=untouched.pk).image.name == untouched.image.name


def test_a_gif_is_stored_without_its_comment_and_xmp_but_with_its_frames_and_looping(client, user, enqueued):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green", "blue")]
    sent = io.BytesIO()
    frames[0].save(sent, "GIF", save_all=True, append_images=frames[1:], loop=0, duration=100,
                   comment=b"Jl. Braga, Bandung", xmp=b"<x:xmpmeta>Jl. Braga, Bandung</x:xmpmeta>")
    client.force_login(user)

    client.post(reverse("upload"), {"photos": [SimpleUploadedFile("kue.gif", sent.getvalue())]})

    with Photo.objects.get().image.open("rb") as stored:
        kept = stored.read()
    assert b"Braga" in sent.getvalue() and b"Braga" not in kept
    with Image.open(io.BytesIO(kept)) as gif, Image.open(sent) as original:
        assert gif.n_frames == original.n_frames == 3 and gif.info["loop"] == 0
        for frame in range(3):
            gif.seek(frame), original.seek(frame)
            assert np.array_equal(np.asarray(gif.convert("RGB")), np.asarray(original.convert("RGB")))


def test_a_photo_whose_orientation_tag_holds_no_orientation_is_stored_as_not_turned(client, user, enqueued):
    """A signed -1 (an editor's bug): Pillow reads it, and could not write it back."""
    tiff = (b"MM\x00*\x00\x00\x00\x08" + (1).to_bytes(2, "big")
            + b"\x01\x12" + (8).to_bytes(2, "big") + (1).to_bytes(4, "big") + b"\xff\xff\x00\x00"
            + b"\x00\x00\x00\x00")  # one entry: Orientation, SSHORT, -1; no next directory
    sent = io.BytesIO()
    with Image.open(sample_photo("kue_lapis")) as img:
        img.save(sent, "JPEG", exif=b"Exif\x00\x00" + tiff)
    assert Image.open(io.BytesIO(sent.getvalue())).getexif()[0x0112] == -1
    client.force_login(user)

    response = client.post(reverse("upload"), {"photos": [SimpleUploadedFile("odd.jpg", sent.getvalue())]})

    photo = Photo.objects.get()
    assert response.status_code == 302
    assert (photo.width, photo.height) == Image.open(sample_photo("kue_lapis")).size
    with photo.image.open("rb") as stored:
        assert not Image.open(stored).getexif()


def test_a_photo_without_metadata_is_stored_as_sent(client, user, enqueued):
    client.force_login(user)

    client.post(reverse("upload"), {"photos": [upload_of(sample_photo("kue_lapis"))]})

    with Photo.objects.get().image.open() as stored:
        assert stored.read() == sample_photo("kue_lapis").read_bytes()


def test_the_rgb_copies_of_a_cmyk_photo_carry_no_cmyk_colour_profile():
    """A browser would read the copy's RGB through the CMYK profile: colours all wrong."""
    cmyk = Image.new("CMYK", (3400, 200), (10, 200, 30, 0))
    cmyk.info["icc_profile"] = b"a CMYK profile"
    rgb = Image.new("RGB", (3400, 200), "red")
    rgb.info["icc_profile"] = profile = b"an RGB profile"

    assert "icc_profile" not in Image.open(images.make_display(cmyk)).info
    assert Image.open(images.make_display(rgb)).info["icc_profile"] == profile


def test_an_account_with_as_many_photos_as_it_may_keep_gets_no_more_until_it_deletes_one(
        client, user, other_user, enqueued, settings):
    settings.MAX_PHOTOS_PER_ACCOUNT = 2
    client.force_login(user)
    make_photo(other_user)  # (another account's photos do not count)
    make_photo(user)
    files = [upload_of(sample_photo("kue_lapis"), "one.jpg"),
             upload_of(sample_photo("kue_klepon"), "two.jpg")]

    page = client.post(reverse("upload"), {"photos": files}, follow=True).content.decode()

    assert Photo.objects.filter(owner=user).count() == 2
    assert ("two.jpg: This account has 2 photos, the most one account may keep: delete some to upload "
            "more.") in page
    files_before = stored_files(settings)
    upload_page = client.get(reverse("upload")).content.decode()
    assert "This account has 2 photos, the most one account may keep" in upload_page
    assert "(an account keeps at most 2)" in client.get(reverse("account")).content.decode()

    response = client.post(reverse("upload"), {"photos": [upload_of(sample_photo(), "three.jpg")]})

    assert response.status_code == 400 and "None of the files could be stored." in response.content.decode()
    assert Photo.objects.filter(owner=user).count() == 2 and stored_files(settings) == files_before
    client.post(reverse("photo-delete", args=[Photo.objects.filter(owner=user).first().pk]))
    assert "This account has 2 photos" not in client.get(reverse("upload")).content.decode()
    response = client.post(reverse("upload"), {"photos": [upload_of(sample_photo(), "three.jpg")]})
    assert response.status_code == 302
    assert Photo.objects.filter(owner=user).count() == 2
