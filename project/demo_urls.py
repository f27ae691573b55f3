"""The demo pages (project/demo_views.py), included under ``demo/`` by the demo project and by the tests."""

from django.urls import path

from . import demo_views

app_name = "demo"

urlpatterns = [
    path("", demo_views.chart_list, name="chart-list"),
    path("charts/<int:pk>/", demo_views.chart_detail, name="chart-detail"),
]
