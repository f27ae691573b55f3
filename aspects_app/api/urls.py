"""Include under a prefix of the host's choosing, e.g. ``path("api/aspects/", include("aspects_app.api.urls"))``."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import pattern_views, picture_views, transit_views, views

app_name = "aspects_api"

router = DefaultRouter()
router.register("charts", views.ChartViewSet, basename="chart")
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = [
    path("synastry/", views.SynastryView.as_view(), name="synastry"),
    path("synastry/patterns/", pattern_views.SynastryPatternsView.as_view(), name="synastry-patterns"),
    path("synastry/inline/", views.InlineSynastryView.as_view(), name="synastry-inline"),
    path("estimate/", views.EstimateView.as_view(), name="estimate"),
    path("configuration/", views.ConfigurationView.as_view(), name="configuration"),
    path("metrics/", views.MetricsView.as_view(), name="metrics"),
    path("metrics/summary/", views.MetricsSummaryView.as_view(), name="metrics-summary"),
    path("charts/<int:pk>/transits/", transit_views.ChartTransitsView.as_view(), name="chart-transits"),
    path("charts/<int:pk>/patterns/", pattern_views.ChartPatternsView.as_view(), name="chart-patterns"),
    path("transit-events/", transit_views.TransitEventListView.as_view(), name="transit-events"),
    path("charts/<int:pk>/wheel.svg", picture_views.ChartWheelView.as_view(), name="chart-wheel"),
    path("charts/<int:pk>/aspect-grid.svg", picture_views.ChartAspectGridView.as_view(), name="chart-aspect-grid"),
    path("synastry/wheel.svg", picture_views.SynastryWheelView.as_view(), name="synastry-wheel"),
    path("synastry/aspect-grid.svg", picture_views.SynastryAspectGridView.as_view(), name="synastry-aspect-grid"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="aspects_api:schema"), name="docs"),
    *router.urls,
    # Last: unknown paths get the API's JSON 404; those without a slash still get APPEND_SLASH's redirect first.
    re_path(r"^.*/$", views.not_found, name="not-found"),
    re_path(r"^.*\.svg$", views.not_found, name="not-found-svg"),  # charts/-1/wheel.svg: JSON 404, not HTML
]
