from payments.views import merchant, payment, queues

app_name = "payments"

urlpatterns = [*payment.urlpatterns, *merchant.urlpatterns, *queues.urlpatterns]
