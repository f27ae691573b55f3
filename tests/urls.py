from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/aspects/", include("aspects_app.api.urls")),
    path("demo/", include("project.demo_urls")),  # the demo project's pages, tested in test_demo_pages.py
    path("silk/", include("silk.urls", namespace="silk")),
]
