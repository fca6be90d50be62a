"""Reader-facing pages and the blinded images (by unguessable token: /i/<token>.png)."""
from django.urls import path

from readerstudy import views

urlpatterns = [
    path("", views.home, name="home"),
    path("studies/<int:study_id>/", views.study_intro, name="study-intro"),
    path("studies/<int:study_id>/rate/", views.study_rate, name="study-rate"),
    path("studies/<int:study_id>/done/", views.study_finish, name="study-finish"),
    path("i/<str:token>.png", views.item_image, name="item-image"),
]
