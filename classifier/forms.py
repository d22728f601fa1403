"""Forms: parsing and field-level messages only; what an uploaded file must be lives in images."""

from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from classifier.images import formats_taken
from classifier.models import TOKEN_NAME_MAX_LENGTH, Feedback, Photo
from classifier.selectors import PHOTOS_DELETED_AT_ONCE, id_text


def too_many_files_message() -> str:
    return _("At most %(n)s photos at once.") % {"n": settings.MAX_FILES_PER_UPLOAD}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field (Django's documented pattern for multiple uploads)."""

    def __init__(self, *args, **kwargs):
        # (the extensions too: a system that knows no type for them hides such files from image/*)
        accept = "image/*,.avif,.heic,.heif"
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": accept, "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data]
        files = [f for f in files if f]
        if not files:
            raise forms.ValidationError(_("Choose at least one photo."), code="required")
        if len(files) > settings.MAX_FILES_PER_UPLOAD:
            raise forms.ValidationError(
                too_many_files_message(), code="too_many"
            )
        return files  # each file is checked on its own by images.validate_image


NON_FIELD_ERRORS_ID = "form-errors"  # (registration/_fields.html)


def focus_first_error(form: forms.BaseForm) -> None:
    """Give the keyboard focus to the field of the form's first error instead of its first field
    (Django's autofocus): a screen reader then reads that field's error, tied to it, and a phone
    scrolls to it. An error of the whole form (a wrong password at sign-in) focuses the password,
    which is what is typed again, with the error tied to it."""
    if not (form.is_bound and form.errors):
        return
    # (the form's order, not the errors': a mismatch is said before the rules of the first field)
    name = next((name for name in form.fields if name in form.errors), None)
    if name is None:
        name = next((name for name in form.fields if "password" in name), next(iter(form.fields)))
        field = form[name]  # (its help, which Django would point at, still pointed at)
        helped = f" {field.auto_id}_helptext" if field.help_text else ""
        form.fields[name].widget.attrs["aria-describedby"] = NON_FIELD_ERRORS_ID + helped
    for field in form.fields.values():
        field.widget.attrs.pop("autofocus", None)
    form.fields[name].widget.attrs["autofocus"] = True


class FocusOnError:
    """For a form shown again with its errors: focus_first_error, at each error added (by its own
    checks, or by the view after them: a service's refusal)."""

    def add_error(self, field, error):
        super().add_error(field, error)
        focus_first_error(self)


class UploadForm(forms.Form):
    photos = MultipleImageField(label=gettext_lazy("Cake photos"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from django.template.defaultfilters import filesizeformat

        # (as many at once as wanted: the page's script sends them one a request; without it the form
        # sends them together, at most MAX_FILES_PER_UPLOAD, which the page says then: upload.html)
        self.fields["photos"].help_text = _("%(formats)s, %(size)s each.") % {
            "formats": formats_taken(), "size": filesizeformat(settings.MAX_UPLOAD_BYTES)}


class GalleryFilterForm(forms.Form):
    label = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", gettext_lazy("any status")),
                                                                     *Photo.Status.choices])
    answer = forms.ChoiceField(required=False, choices=[  # (selectors.photos_for_user's `answer`)
        ("", gettext_lazy("answered or not")), ("unanswered", gettext_lazy("not answered yet")),
        ("confirmed", gettext_lazy("confirmed")), ("corrected", gettext_lazy("corrected"))])

    def __init__(self, *args, labels: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        cakes = [(item["slug"], item["name"]) for item in labels]
        self.fields["label"].choices = [("", _("any cake")), *cakes, (Feedback.NONE, _("none of these"))]


class PhotoIdsField(forms.TypedMultipleChoiceField):
    """Photos' ids, any (which exist, and whose they are, is for selectors.photos_to_delete)."""

    def __init__(self, **kwargs):
        super().__init__(coerce=int, **kwargs)

    def valid_value(self, value) -> bool:
        return id_text(value) and int(value) > 0  # (as the API's: no photo has id 0)


class PhotoChoiceForm(forms.Form):
    """The photos ticked on the page that deletes several."""

    photo = PhotoIdsField(error_messages={"required": gettext_lazy("Tick the photos to delete first.")})

    def clean_photo(self) -> set[int]:
        ids = set(self.cleaned_data["photo"])
        if len(ids) > PHOTOS_DELETED_AT_ONCE:
            raise forms.ValidationError(_("At most %(most)d photos are deleted at once."),
                                        params={"most": PHOTOS_DELETED_AT_ONCE}, code="too_many")
        return ids


EMAIL_MAX_LENGTH = 254  # the columns' (User.email, PendingEmail.email)
EMAIL_HELP = gettext_lazy("Optional: only to send you a link if you forget your password, once you confirm "
                          "the address by the link we send to it. Nobody else sees it.")


class RulesWithMismatch:
    """Django checks a new password against its rules (too short, too common...) on the second field,
    which a mismatch takes out: the rules were said only once the two matched, a second round for
    a password too short anyway. On a mismatch they are checked on the first field, at once."""

    first, second = "password1", "password2"

    def _post_clean(self):
        super()._post_clean()
        if self.has_error(self.second, "password_mismatch"):
            self.validate_password_for_user(getattr(self, "user", None) or self.instance, self.first)


class SignUpForm(FocusOnError, RulesWithMismatch, UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
        help_texts = {"email": EMAIL_HELP}
        # as everywhere on the site (Django's: "Email address")
        labels = {"email": gettext_lazy("E-mail address")}
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The password's rules, without what a new password does to an account's token and address
        # change (accounts.EndAccessOnPasswordChange): a new account has neither.
        from django.contrib.auth import password_validation

        from classifier.accounts import EndAccessOnPasswordChange

        rules = [v for v in password_validation.get_default_password_validators()
                 if not isinstance(v, EndAccessOnPasswordChange)]
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html(rules)


def password_checked(request, password: str) -> str:
    """`password`, if it is the signed-in user's (a guess counts towards the lockout: django-axes then
    answers its page); else a ValidationError."""
    from classifier.accounts import password_confirmed, wrong_password

    if not password_confirmed(request, password):
        raise forms.ValidationError(wrong_password(request), code="password_incorrect")
    return password


RESET_NOT_QUEUED = gettext_lazy("The e-mail cannot be sent just now (our mail queue is not answering); "
                                "nothing was sent. Try again in a few minutes.")
RESET_RETRY_AFTER_S = 60


class PasswordResetForm(FocusOnError, auth_forms.PasswordResetForm):
    """Django's, with the e-mails sent by the worker (services.password_reset_send): the request only
    queues the address, so it takes as long whether an account has it or not, and a slow mail
    server holds no web thread."""

    queued: bool | None = None  # False: the broker was not answering, and nothing will send the e-mail

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].label = _("E-mail address")  # as everywhere on the site (Django's: "Email")

    def save(self, *, request, use_https: bool = False, **_kwargs) -> None:
        from django.contrib.sites.shortcuts import get_current_site

        from classifier import services, tasks

        email, domain = self.cleaned_data["email"], get_current_site(request).domain
        language = services.request_language()  # (the e-mail's, as the worker has no request)

        def send() -> None:
            self.queued = tasks.enqueue(tasks.send_password_reset, email, domain, use_https,
                                        language=language)

        transaction.on_commit(send, robust=True)


class ResetEmails(auth_forms.PasswordResetForm):
    """Django's form as the worker uses it: a link to each account with the address for which
    `reserve()` allows one more e-mail; save() says how many it sent."""

    def __init__(self, *args, reserve, **kwargs):
        super().__init__(*args, **kwargs)
        self.reserve, self.sent = reserve, 0

    def get_users(self, email):
        for user in super().get_users(email):
            if not self.reserve():
                return
            self.sent += 1
            yield user

    def save(self, **kwargs) -> int:
        super().save(**kwargs)
        return self.sent


class PasswordChangeForm(FocusOnError, RulesWithMismatch, auth_forms.PasswordChangeForm):
    """Django's, with the old password checked as a sign-in attempt: a session left open is not a
    way to guess it."""

    first, second = "new_password1", "new_password2"

    def __init__(self, user, *args, request, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self):
        return password_checked(self.request, self.cleaned_data["old_password"])


class SignInForm(FocusOnError, auth_forms.AuthenticationForm):
    """Django's sign-in form (FocusOnError)."""


class SetPasswordForm(FocusOnError, RulesWithMismatch, auth_forms.SetPasswordForm):
    """Django's form for the new password a reset link sets (FocusOnError)."""

    first, second = "new_password1", "new_password2"


class PasswordConfirmForm(FocusOnError, forms.Form):
    """A step that needs the account's password again (a session left open must not be enough)."""

    password = forms.CharField(label=gettext_lazy("Your password"), strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    # What each step's password is for, in its label: the account page has three, and a list of its
    # fields (a screen reader's) would name them all alike.
    PURPOSES = {"": gettext_lazy("Your password, to change the address"),
                "token": gettext_lazy("Your password, for a new API token"),
                "delete": gettext_lazy("Your password, to delete the account"),
                "codes": gettext_lazy("Your password, for new backup codes")}

    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        if label := self.PURPOSES.get(self.prefix or ""):
            self.fields["password"].label = label

    def clean_password(self):
        return password_checked(self.request, self.cleaned_data["password"])


class ApiTokenForm(PasswordConfirmForm):
    """A new API token: what it is for (to tell an account's tokens apart), and the password."""

    name = forms.CharField(
        label=gettext_lazy("What it is for (optional)"), required=False, max_length=TOKEN_NAME_MAX_LENGTH,
        help_text=gettext_lazy("A program or a computer: the list of your tokens shows it."))
    field_order = ["name", "password"]


class SecondFactorForm(FocusOnError, forms.Form):
    """A code of the account's authenticator app, or one of its backup codes."""

    code = forms.CharField(label=gettext_lazy("Code"), max_length=16, help_text=gettext_lazy(
        "The 6 digits your authenticator app shows now for cakesite, or one of your backup codes."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "none",
                                      "spellcheck": "false"}))

    def clean_code(self) -> str:
        return one_time_code(self.cleaned_data["code"])


class AddressCodeForm(SecondFactorForm):
    """The code e-mailed to the account's address before an authenticator is set up."""

    code = forms.CharField(label=gettext_lazy("Code from the e-mail"), max_length=16, help_text=gettext_lazy(
        "The 6 digits in the e-mail sent to the account's address."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                      "spellcheck": "false"}))


def one_time_code(typed: str) -> str:
    """A code as typed ("123 456", a backup code in capitals), as django-otp compares it."""
    return "".join(typed.split()).lower()


class EmailForm(PasswordConfirmForm):
    """A new e-mail address (or none), which a password reset link would be sent to: it needs the
    password, or a session left open would be enough to take the account over."""

    email = forms.EmailField(label=gettext_lazy("E-mail address"), required=False, help_text=EMAIL_HELP,
                             max_length=EMAIL_MAX_LENGTH,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    field_order = ["email", "password"]
