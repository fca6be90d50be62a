"""Reader-facing pages and the reader API."""
from django.urls import path

from readerstudy import views

urlpatterns = [
    path("", views.home, name="home"),
]
