"""hopwatch's URLs: ``path("hopwatch/", include("hopwatch.urls"))`` (staff only)."""

from django.urls import path

from hopwatch import views

app_name = "hopwatch"
urlpatterns = [path("threads/", views.threads, name="threads")]
