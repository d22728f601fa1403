"""The Django admin: every model with useful lists and filters; activation as an explicit action."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import BadRequest, PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.template.defaultfilters import floatformat
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from classifier import selectors, services
from classifier.models import ApiToken, Feedback, ModelVersion, Photo, Prediction, TrainingRun

admin.site.site_header = gettext_lazy("Cakesite administration")  # (Django's: "Django administration")
admin.site.site_title = gettext_lazy("Cakesite admin")


class ModelVersionAddForm(forms.ModelForm):
    """A version is an exported model folder: its labels and metrics are read from the folder."""

    class Meta:
        model = ModelVersion
        fields = ["name", "path"]

    def clean_path(self):
        path = self.cleaned_data["path"]
        for field, value in services.model_version_files(path).items():
            setattr(self.instance, field, value)
        return path


class QueryChecked:
    """The admin takes lookups and selected ids from the request as they come; two it cannot answer
    were 500s, and are bad requests (400): a year outside 1 to 9999 (`?created__year=0`, which
    Python's dates cannot hold) and a selected id that is no id (`_selected_action=abc`)."""

    def lookup_allowed(self, lookup, value, request=None):
        if {"year", "iso_year"} & set(lookup.split("__")):
            years = str(value).split(",")  # (one, or several for __in)
            if not all(year.isascii() and year.isdigit() and 1 <= int(year) <= 9999 for year in years):
                return False
        return super().lookup_allowed(lookup, value, request)

    def response_action(self, request, queryset):
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not all(pk.isascii() and pk.isdigit() and int(pk) < 2**63 for pk in selected):
            raise BadRequest("The selected items are not ids.")
        return super().response_action(request, queryset)


class WithoutBulkDelete(QueryChecked, admin.ModelAdmin):
    """No "delete selected" action: what may not be deleted one by one (or only through a service
    that may refuse) must not go in bulk, under a "Successfully deleted" said regardless."""

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(ModelVersion)
class ModelVersionAdmin(WithoutBulkDelete):
    """Registered from a model folder; afterwards only the name changes (what a version serves is
    fixed, so workers and metrics never disagree with it), activation is an action, and the active
    version cannot be deleted."""

    list_display = ["name", "is_active", "test_top1", "test_macro_f1", "classes", "created"]
    list_filter = ["is_active", "created"]
    search_fields = ["name", "path"]
    actions = ["activate", "activate_confirmed"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ModelVersionAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name", "path"] if obj is None else ["name", *self.get_readonly_fields(request, obj)]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["path", "fingerprint", "labels", "metrics", "is_active", "created"]

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.is_active)

    def log_deletions(self, request, queryset):
        """Written by delete_model, in the deletion's own transaction: a refused one leaves no entry."""

    def delete_model(self, request, obj):
        """Through the service, which holds activations off: the check above was made when the page
        was asked for, and the version may have been activated since."""
        try:
            with transaction.atomic():
                super().log_deletions(request, [obj])
                services.model_version_delete(obj)
        except ValidationError as exc:
            request.refused_deletion = " ".join(exc.messages)

    def response_delete(self, request, obj_display, obj_id):
        if refusal := getattr(request, "refused_deletion", ""):
            self.message_user(request, _("Not deleted: %(reason)s") % {"reason": refusal}, messages.ERROR)
            return redirect("admin:classifier_modelversion_changelist")
        return super().response_delete(request, obj_display, obj_id)

    @admin.display(description=gettext_lazy("test top-1"))
    def test_top1(self, obj: ModelVersion) -> str:
        value = selectors.benchmark_figure(obj, "top1")
        # (93,8% in Indonesian) rounded, as the staff page: number_format cuts a float off (93.75: 93.7)
        return "-" if value is None else f"{floatformat(100 * value, 1)}%"

    @admin.display(description=gettext_lazy("test macro F1"))
    def test_macro_f1(self, obj: ModelVersion) -> str:
        value = selectors.benchmark_figure(obj, "macro_f1")
        return "-" if value is None else floatformat(value, 3)

    @admin.display(description=gettext_lazy("classes"))
    def classes(self, obj: ModelVersion) -> int:
        return len(obj.labels)

    @admin.action(description=gettext_lazy("Activate the selected version (exactly one)"),
                  permissions=["change"])
    def activate(self, request, queryset, confirmed=False):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one version to activate."), messages.ERROR)
            return
        try:
            version = services.model_version_activate(queryset.get(), confirmed=confirmed)
        except ValidationError as exc:
            also = (" " + _("To use it all the same: “%(action)s”.")
                    % {"action": self.activate_confirmed.short_description}
                    if exc.code == "needs_confirmation" else "")
            self.message_user(request, " ".join(exc.messages) + also, messages.ERROR)
            return
        self.message_user(request, _("The active version is now %(name)s.") % {"name": version.name},
                          messages.SUCCESS)

    # (short: the list's action menu is as wide as its longest; the first action's refusal says why)
    @admin.action(description=gettext_lazy("Activate the selected version despite its warning"),
                  permissions=["change"])
    def activate_confirmed(self, request, queryset):
        self.activate(request, queryset, confirmed=True)


class Figures:
    """A prediction's figures as the site shows them (Kue Lapis, 87%, 41.3 ms), not as stored
    (kue_lapis, 0.8734123)."""

    @admin.display(description=gettext_lazy("label"), ordering="label")
    def label_shown(self, obj: Prediction) -> str:
        return obj.label_name

    @admin.display(description=gettext_lazy("confidence"), ordering="confidence")
    def confidence_shown(self, obj) -> str:
        return "-" if obj.confidence is None else f"{obj.confidence:.0%}"

    @admin.display(description=gettext_lazy("margin"), ordering="margin")
    def margin_shown(self, obj) -> str:  # to the second most probable cake
        return "-" if obj.margin is None else f"{obj.margin:.0%}"

    @admin.display(description=gettext_lazy("inference"), ordering="inference_ms")
    def inference_shown(self, obj: Prediction) -> str:
        return f"{floatformat(obj.inference_ms, 1)} ms"


class PredictionInline(Figures, admin.TabularInline):
    model = Prediction
    extra = 0
    fields = ["model_version", "label_shown", "confidence_shown", "inference_shown", "created"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # a prediction comes from the worker only


@admin.register(Photo)
class PhotoAdmin(Figures, QueryChecked, admin.ModelAdmin):
    """Photos come in through the site or the API, which check, thumbnail and queue them. Here they
    are read, filtered, deleted, and failed ones queued again (after a model outage, say); their
    files and status follow the product's rules, not a hand edit (a photo made `done` by hand would
    have no result, a file swapped would skip the checks)."""

    list_display = ["id", "preview", "owner", "status", "why", "width", "height", "created"]
    list_filter = ["status", "awaits_model", "created", "image_format"]
    search_fields = ["owner__username", "sha256", "original_name"]
    show_full_result_count = False
    readonly_fields = ["preview", "owner", "status", "error", "starts", "sha256_shown", "width", "height",
                       "image_format", "created", "waiting_since", "updated", "predicted", "confidence_shown",
                       "margin_shown", "answer", "client_key", "awaits_model"]
    # private files (the preview shows the photo), and the figures shown as the site shows them (the
    # prediction's copies: edited, the gallery's filters would disagree with the prediction)
    exclude = ["image", "thumbnail", "display", "confidence", "margin", "sha256", "predicted_label"]
    inlines = [PredictionInline]
    actions = ["retry_failed"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        """Only what was edited: a full save would write back the status the form was loaded with,
        undoing the worker's change meanwhile."""
        if form.changed_data:
            obj.save(update_fields=[*form.changed_data, "updated"])

    def delete_model(self, request, obj):
        """As the site deletes one (services.photo_delete: the photo locked first), so a result the
        worker is recording meanwhile is deleted with it instead of failing the deletion at commit."""
        try:
            services.photo_delete(obj)
        except Http404:  # deleted meanwhile
            pass

    def delete_queryset(self, request, queryset):
        for photo in queryset:
            self.delete_model(request, photo)

    @admin.action(description=gettext_lazy("Classify the selected failed photos again"),
                  permissions=["change"])
    def retry_failed(self, request, queryset):
        selected, retried = list(queryset), 0
        for photo in selected:
            try:
                services.photo_retry(photo)
            except (ValidationError, Http404):  # not failed (retried meanwhile, say), or deleted
                continue
            retried += 1
        skipped = len(selected) - retried
        if skipped:
            said = ngettext("%(retried)s failed photo queued again; %(skipped)s of those selected were not "
                            "failed.",
                            "%(retried)s failed photos queued again; %(skipped)s of those selected were not "
                            "failed.", retried)
        else:
            said = ngettext("%(retried)s failed photo queued again.",
                            "%(retried)s failed photos queued again.", retried)
        self.message_user(request, said % {"retried": retried, "skipped": skipped}, messages.SUCCESS)

    @admin.display(description=gettext_lazy("predicted label"))
    def predicted(self, obj: Photo) -> str:
        prediction = selectors.latest_prediction(obj)  # (the one the site shows)
        return prediction.label_name if prediction else "-"

    @admin.display(description=gettext_lazy("why it failed"))
    def why(self, obj: Photo) -> str:
        """What its owner is told, shortened: which failures a retry would mend, at a glance."""
        return Truncator(obj.error).chars(80) if obj.status == Photo.Status.FAILED else ""

    @admin.display(description="SHA-256")
    def sha256_shown(self, obj: Photo) -> str:
        return obj.sha256

    @admin.display(description=gettext_lazy("answer"))
    def answer(self, obj: Photo) -> str:
        """The user's answer, as the photo's page gives it (read-only: see the answers' admin)."""
        feedback = getattr(obj, "feedback", None)
        if feedback is None:
            return _("none yet")
        values = {"answer": feedback.answer_name(feedback.model_version)}
        if feedback.user is None:
            said = (_("corrected to %(answer)s by a deleted account") if feedback.is_correction
                    else _("confirmed as %(answer)s by a deleted account"))
        else:
            values["who"] = feedback.user.get_username()
            said = (_("corrected to %(answer)s by %(who)s") if feedback.is_correction
                    else _("confirmed as %(answer)s by %(who)s"))
        return said % values

    @admin.display(description=gettext_lazy("photo"))
    def preview(self, obj: Photo) -> str:
        if not obj.pk:
            return "-"
        return format_html('<img src="{}" alt="" style="max-height:60px">',
                           reverse("photo-thumbnail", args=[obj.pk]))


class ReadOnlyAdmin(WithoutBulkDelete):
    """A record made by the product's own rules (services), to read and filter here, never to add,
    edit or delete by hand: a deleted prediction would leave its photo done without a result, and a
    hand-made answer would skip the checks that its label is one of the model's cakes. They go with
    their photo (the delete permission stays for that: the admin asks it of every cascaded row)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_delete": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        raise PermissionDenied(_("Delete the photo instead: its prediction and answer go with it."))


@admin.register(Prediction)
class PredictionAdmin(Figures, ReadOnlyAdmin):
    list_display = ["id", "photo", "label_shown", "confidence_shown", "model_version", "inference_shown",
                    "created"]
    list_filter = ["label", "model_version", "created"]
    search_fields = ["photo__owner__username", "label"]
    show_full_result_count = False


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    """Answers are given on the photo's page, the review queue or the API (deleting the photo
    deletes its answer)."""

    list_display = ["photo", "answer", "predicted", "is_correction", "user", "model_version", "updated"]
    list_filter = ["is_correction", "label", "model_version", "updated"]
    search_fields = ["user__username", "label", "predicted_label"]
    list_select_related = ["photo__owner", "user", "model_version"]
    show_full_result_count = False  # (a count of every answer more on each filtered page)

    @admin.display(description=gettext_lazy("answer"), ordering="label")
    def answer(self, obj: Feedback) -> str:
        return obj.answer_name(obj.model_version)

    @admin.display(description=gettext_lazy("predicted label"), ordering="predicted_label")
    def predicted(self, obj: Feedback) -> str:
        version = obj.model_version
        return version.display_name(obj.predicted_label) if version else obj.predicted_label


@admin.register(ApiToken)
class ApiTokenAdmin(WithoutBulkDelete):
    """Accounts' API tokens, to revoke one (delete it): a program someone lost, a token seen where it
    should not be. Nothing here shows a token, as the database keeps only its hash; an account's
    owner makes them (the account page, the API)."""

    list_display = ["start", "name", "user", "created", "last_used"]
    list_filter = ["created", "last_used"]
    search_fields = ["user__username", "name"]
    list_select_related = ["user"]
    ordering = ["-created"]
    fields = readonly_fields = ["start", "name", "user", "created", "last_used"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=gettext_lazy("token"))
    def start(self, obj: ApiToken) -> str:
        return obj.start


@admin.register(TrainingRun)
class TrainingRunAdmin(QueryChecked, admin.ModelAdmin):
    """Runs are started with the button on the list (fast mode by default), never edited by hand."""

    change_list_template = "admin/classifier/trainingrun/change_list.html"
    list_display = ["id", "mode_name", "status", "progress", "stage", "base_version", "result_version",
                    "started_by", "created", "duration"]
    list_filter = ["status", "mode", "created"]
    search_fields = ["base_version__name", "result_version__name", "started_by__username", "error"]
    list_select_related = ["base_version", "result_version", "started_by"]
    # (the answers a run used: their count and ids, not thousands of pairs as JSON)
    readonly_fields = [f.name for f in TrainingRun._meta.fields if f.name != "photos_used"] + ["answers_used"]
    exclude = ["photos_used"]
    actions = ["cancel_runs"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("photos_used")  # the list shows none of them

    @admin.display(description=gettext_lazy("answers used"))
    def answers_used(self, obj: TrainingRun) -> str:
        if not obj.photos_used:
            return _("not recorded (a run before the record, or one that registered no version)")

        def ids(pairs: list) -> str:  # (a long list: its first ids; the rest are in the record)
            shown = ", ".join(str(pk) for pk, _label in pairs[:50])
            if len(pairs) > 50:
                return _("%(shown)s, and %(more)s more") % {"shown": shown, "more": len(pairs) - 50}
            return shown

        # (the record's keys, in words)
        parts = {"trained": pgettext("answers used", "trained"),
                 "held_out": pgettext("answers used", "held out")}
        return " ".join((_("%(part)s: %(count)s (photo ids %(ids)s).") if pairs else _("%(part)s: none."))
                        % {"part": parts.get(part, part.replace("_", " ")), "count": len(pairs),
                           "ids": ids(pairs)}
                        for part, pairs in obj.photos_used.items())

    def has_add_permission(self, request):
        return False

    def has_cancel_permission(self, request):  # whoever may start runs may cancel them
        return request.user.has_perm("classifier.add_trainingrun")

    @admin.action(description=gettext_lazy("Cancel the selected queued or running runs"),
                  permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        cancelled = []
        for run in queryset:
            try:
                cancelled.append(services.training_run_cancel(run, user=request.user).pk)
            except (Http404, ValidationError):  # deleted meanwhile, or ended (said below if none is left)
                continue
        if cancelled:
            said = ngettext("Cancelled run %(runs)s: a queued run never starts, a running one stops at its "
                            "next step and activates nothing. A new run can start now.",
                            "Cancelled runs %(runs)s: a queued run never starts, a running one stops at its "
                            "next step and activates nothing. A new run can start now.", len(cancelled))
            self.message_user(request, said % {"runs": ", ".join(map(str, cancelled))}, messages.SUCCESS)
        else:
            self.message_user(request, _("No run was cancelled: only queued or running runs can be."),
                              messages.WARNING)

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=gettext_lazy("mode"), ordering="mode")
    def mode_name(self, obj: TrainingRun) -> str:
        return obj.mode  # (its long label would widen the table past the result's column)

    @admin.display(description=gettext_lazy("seconds"))
    def duration(self, obj: TrainingRun) -> str:
        return "-" if obj.seconds is None else f"{obj.seconds:.1f}"

    def has_delete_permission(self, request, obj=None):  # a live run would come back when it ends
        return super().has_delete_permission(request, obj) and not (obj and obj.status in TrainingRun.LIVE)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "modes": TrainingRun.Mode.choices,
                         "auto_rule": selectors.auto_activation_rule()}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        start = self.admin_site.admin_view(self.start_view)
        return [path("start/", start, name="classifier_trainingrun_start"), *super().get_urls()]

    def start_view(self, request):
        if request.method != "POST" or not request.user.has_perm("classifier.add_trainingrun"):
            self.message_user(request, _("Starting a run needs a POST by staff allowed to add runs."),
                              messages.ERROR)
            return redirect("admin:classifier_trainingrun_changelist")
        try:
            run = services.training_run_start(user=request.user, mode=request.POST.get("mode", "fast"),
                                              auto_activate=request.POST.get("auto_activate") == "on")
            said = _("Training run %(run)s is queued (%(mode)s mode).") % {"run": run.pk, "mode": run.mode}
            self.message_user(request, said, messages.SUCCESS)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        return redirect("admin:classifier_trainingrun_changelist")


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AccountAdmin(QueryChecked, UserAdmin):
    """Django's, deleting an account as the site does (services.account_remove: its photos and the
    account locked first), so an upload stored or a result recorded meanwhile waits for the deletion
    instead of failing it at commit."""

    def lookup_allowed(self, lookup, value, request=None):
        # Django allows `<relation>__pk` as a local field: `?auth_token_set__pk__startswith=ab` would
        # let staff who may only view accounts read the API tokens' hashes (and their first
        # characters) a character at a time, as Django's UserAdmin refuses `password...`. Neither
        # signs anyone in; what staff may not view, the account list does not show either.
        if lookup.split("__")[0] == "auth_token_set":
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_deleted_objects(self, objs, request):
        # An account's API tokens go with it, as when its owner deletes it: deleting accounts needs no
        # permission on tokens (a new model's, which no group of staff had when it came).
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(ApiToken._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        services.account_remove(obj)

    def delete_queryset(self, request, queryset):
        for account in queryset:
            services.account_remove(account)


admin.site.unregister(StaticDevice)


@admin.register(StaticDevice)
class BackupCodesAdmin(StaticDeviceAdmin):
    """django-otp's, without its list of codes: the database keeps their digests (a code typed in
    there would be kept as it is, and never work); new codes are made on the account page."""

    inlines = []


admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class AuthenticatorAdmin(TOTPDeviceAdmin):
    """django-otp's, refusing filters on the secret: `?key__startswith=4a` would let staff who may
    view authenticators read a colleague's secret a character at a time (OTP_ADMIN_HIDE_SENSITIVE_DATA
    only hides the field)."""

    def lookup_allowed(self, lookup, value, request=None):
        if lookup.split("__")[0] == "key":
            return False
        return super().lookup_allowed(lookup, value, request)


# The account's e-mailed code before it sets up an authenticator (services.second_factor_address_code)
# is no sign-in factor here: marked confirmed in the admin, it would become one, and its list would
# offer filters on the code while it works.
admin.site.unregister(EmailDevice)
