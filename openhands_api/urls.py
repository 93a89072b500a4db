from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("sessions.urls")),
]

handler400 = "sessions.http_errors.handler400"
handler403 = "sessions.http_errors.handler403"
handler404 = "sessions.http_errors.handler404"
handler500 = "sessions.http_errors.handler500"
