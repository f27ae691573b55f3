from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/aspects/", include("aspects_app.api.urls")),
]
if settings.SILK_ENABLED:
    urlpatterns.append(path("silk/", include("silk.urls", namespace="silk")))
