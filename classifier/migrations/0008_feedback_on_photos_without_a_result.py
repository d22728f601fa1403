"""Answers given before a photo had a result (allowed until feedback_record refused them) were stored
with no predicted label, so each counted as a correction. Give each the label its photo got since,
and drop the ones whose photo still has none: there is no label they confirm or correct."""

from django.db import migrations


def repair(apps, schema_editor):
    Feedback = apps.get_model("classifier", "Feedback")
    Prediction = apps.get_model("classifier", "Prediction")
    for feedback in Feedback.objects.filter(predicted_label=""):
        prediction = Prediction.objects.filter(photo_id=feedback.photo_id).order_by("-created", "-id").first()
        if prediction is None:
            feedback.delete()
            continue
        feedback.predicted_label = prediction.label
        feedback.model_version_id = prediction.model_version_id
        feedback.is_correction = feedback.label != prediction.label
        feedback.save(update_fields=["predicted_label", "model_version", "is_correction"])


class Migration(migrations.Migration):
    dependencies = [("classifier", "0007_prediction_heatmap")]

    operations = [migrations.RunPython(repair, migrations.RunPython.noop)]
