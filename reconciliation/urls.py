from reconciliation.views import breaks, files

app_name = "reconciliation"

urlpatterns = files.urlpatterns + breaks.urlpatterns
