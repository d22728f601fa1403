"""Forms: parsing and field-level messages only; validation of images lives in services."""

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm

from classifier.models import Photo


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field (Django's documented pattern for multiple uploads)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data]
        files = [f for f in files if f]
        if not files:
            raise forms.ValidationError("Choose at least one photo.", code="required")
        if len(files) > settings.MAX_FILES_PER_UPLOAD:
            raise forms.ValidationError(
                f"At most {settings.MAX_FILES_PER_UPLOAD} photos at once.", code="too_many"
            )
        return [super(MultipleImageField, self).clean(f, initial) for f in files]


class UploadForm(forms.Form):
    photos = MultipleImageField(label="Cake photos",
                                help_text="JPEG, PNG, GIF, BMP or WebP; several at once.")


class GalleryFilterForm(forms.Form):
    label = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Photo.Status.choices])

    def __init__(self, *args, labels: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [("", "any cake")] + [(item["slug"], item["name"]) for item in labels]


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)
