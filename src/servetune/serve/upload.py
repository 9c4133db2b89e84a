"""Read the `file` field of a multipart/form-data upload into memory, with a byte cap.

Starlette's form parser spools large files to temporary files on disk; a server that promises nothing a
client sends touches the disk parses the stream itself with python-multipart's push parser and keeps only
the one field it needs.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

FIELD = b"file"
# Boundaries, part headers and small extra fields around the file.
MULTIPART_OVERHEAD = 64 * 1024


class UploadError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FileFieldCollector:
    """python-multipart callbacks that keep the bytes of the first part named `file`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.in_file = False
        self.found = False
        self.data = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.in_file = False

    def on_header_end(self) -> None:
        if bytes(self.header_field).lower() == b"content-disposition" and not self.found:
            _, options = parse_options_header(bytes(self.header_value))
            self.in_file = options.get(b"name") == FIELD
        self.header_field.clear()
        self.header_value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file:
            return
        if len(self.data) + (end - start) > self.max_bytes:
            raise UploadError(413, f"file too large: over the limit of {self.max_bytes} bytes")
        self.data.extend(data[start:end])

    def on_part_end(self) -> None:
        if self.in_file:
            self.found = True
            self.in_file = False


async def read_file_field(request: Request, max_bytes: int) -> bytes:
    """The bytes of the form field `file`; raises UploadError(status, reason) for anything else."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        shown = content_type.decode("latin-1") or "none"
        raise UploadError(415, f"expected a multipart/form-data upload with a 'file' field, got {shown}")
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary")
    body_limit = max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_limit:
        # Refuse before reading anything: the client said how much it is going to send.
        raise UploadError(413, f"upload too large: {declared} bytes (limit {max_bytes} bytes for the file)")
    collector = FileFieldCollector(max_bytes)
    try:
        parser = MultipartParser(boundary, collector.callbacks(), max_size=body_limit)
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise UploadError(413, f"upload too large: over {body_limit} bytes")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise UploadError(400, f"malformed multipart/form-data body: {err}") from None
    except ValueError as err:  # a boundary python-multipart refuses
        raise UploadError(400, f"malformed multipart/form-data body: {err}") from None
    except ClientDisconnect:
        raise UploadError(400, "client disconnected during the upload") from None
    if not collector.found:
        raise UploadError(400, "no 'file' field in the form: send the image as multipart field 'file'")
    if not collector.data:
        raise UploadError(400, "empty file")
    return bytes(collector.data)
