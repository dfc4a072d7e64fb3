"""A site whose root is ``path("", view)``: the pattern matched for "/" is ""."""

from django.urls import path

from tests.testapp import views

urlpatterns = [path("", views.async_view), path("plain/", views.async_view)]
