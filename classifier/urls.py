"""Website URLs of the classifier app."""

from django.urls import path

from classifier import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("upload/", views.upload, name="upload"),
    path("photos/", views.gallery, name="gallery"),
    path("photos/status/", views.photo_status, name="photo-status"),
    path("photos/delete/", views.photos_delete, name="photos-delete"),
    path("photos/<int:pk>/", views.photo_detail, name="photo-detail"),
    path("photos/<int:pk>/image/", views.photo_image, {"kind": "image"}, name="photo-image"),
    path("photos/<int:pk>/display/", views.photo_image, {"kind": "display"}, name="photo-display"),
    path("photos/<int:pk>/thumbnail/", views.photo_image, {"kind": "thumbnail"}, name="photo-thumbnail"),
    path("photos/<int:pk>/heatmap/", views.photo_image, {"kind": "heatmap"}, name="photo-heatmap"),
    path("photos/<int:pk>/retry/", views.photo_retry, name="photo-retry"),
    path("photos/<int:pk>/delete/", views.photo_delete, name="photo-delete"),
    path("photos/<int:pk>/feedback/", views.photo_feedback, name="photo-feedback"),
    path("photos/<int:pk>/feedback/withdraw/", views.photo_feedback_withdraw, name="photo-feedback-withdraw"),
    path("review/", views.review_queue, name="review"),
    path("staff/models/", views.model_versions, name="model-versions"),
    path("staff/models/<int:pk>/activate/", views.model_version_activate, name="model-version-activate"),
    path("staff/models/<int:pk>/confusion/<str:split>.png", views.model_version_confusion,
         name="model-version-confusion"),
    path("staff/models/<int:pk>/curves.png", views.model_version_curves, name="model-version-curves"),
    path("staff/feedback-accuracy.png", views.feedback_accuracy_plot, name="feedback-accuracy-plot"),
    path("staff/training/start/", views.training_run_start, name="training-run-start"),
    path("staff/training/<int:pk>/cancel/", views.training_run_cancel, name="training-run-cancel"),
]
