"""A request-level cap on uploads, applied before any view runs.

Django reads a multipart body when anything touches request.POST (the CSRF check does, before the
view), so a limit checked only in a service comes after the bytes were received and spooled. This
handler stops at the declared Content-Length, or at the first chunk past the cap, without storing
the rest, and leaves the reason on the request for the view to show.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


def _limit_text(limit: int) -> str:
    return f"{limit / (1024 * 1024):.0f} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


class RequestSizeLimitUploadHandler(FileUploadHandler):
    def _refuse(self) -> None:
        self.request.upload_refused = (
            f"the upload is larger than the {_limit_text(settings.UPLOAD_MAX_BYTES)} this service accepts"
        )
        raise StopUpload(connection_reset=True)

    declared_too_large = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # Django stops an upload only from the chunk callbacks; remember the verdict for the first one.
        self.declared_too_large = bool(content_length and content_length > settings.UPLOAD_MAX_BYTES)

    def receive_data_chunk(self, raw_data, start):
        if self.declared_too_large or start + len(raw_data) > settings.UPLOAD_MAX_BYTES:
            self._refuse()
        return raw_data

    def file_complete(self, file_size):
        return None
