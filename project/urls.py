from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/aspects/", include("aspects_app.api.urls")),
    path("demo/", include("project.demo_urls")),
    path("", RedirectView.as_view(pattern_name="demo:chart-list")),
]
if settings.SILK_ENABLED:
    urlpatterns.append(path("silk/", include("silk.urls", namespace="silk")))
