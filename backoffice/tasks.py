import socket

from celery import shared_task


@shared_task(name="backoffice.tasks.ping", acks_late=False)
def ping(*, token: str) -> dict:
    """A liveness probe for workers: touches nothing, returns who answered."""
    return {"pong": token, "worker": socket.gethostname()}
