#!/usr/bin/env python3
"""A tiny stand-in for Confluent Schema Registry, for tests (Python 3 standard library only).

    python3 tests/kafka/schema_registry.py --port 0

binds 127.0.0.1 (port 0: any free port), prints exactly one line, `listening on 127.0.0.1:PORT`,
to stdout, and serves until killed. State is in memory only.

The subset of the REST API that serializers and deserializers use, with the real one's shapes:

    POST /subjects/{subject}/versions     {"schema": "...", "schemaType"?: "AVRO"}  -> {"id": N}
    POST /subjects/{subject}              look a schema up under a subject
                                          -> {"subject", "version", "id", "schema"}
    GET  /schemas/ids/{id}                -> {"schema": "..."}
    GET  /subjects                        -> ["subject", ...]
    GET  /subjects/{subject}/versions     -> [1, 2, ...]
    GET  /subjects/{subject}/versions/{version|latest}
                                          -> {"subject", "version", "id", "schema"}

As in the real registry, ids are global and start at 1, and a schema (the same text and type)
has one id wherever it is registered: registering it again under a subject that has it returns
that version's id and adds no version. "schemaType" is AVRO unless given (AVRO, JSON or
PROTOBUF) and is in answers only when it is not AVRO. Schemas are stored as given: the text is
not parsed or normalized. Errors are {"error_code": N, "message": "..."}: 40401 subject not
found, 40402 version not found, 40403 schema not found (all HTTP 404), 42201 invalid schema and
42202 invalid version (HTTP 422). Answers are application/vnd.schemaregistry.v1+json.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class ApiError(Exception):
    def __init__(self, status, error_code, message):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject):
    return ApiError(404, 40401, f"Subject '{subject}' not found.")


class Registry:
    """The state: global schema ids and each subject's versions. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._schemas = {}  # id -> (schema_type, schema)
        self._ids = {}  # (schema_type, schema) -> id
        self._subjects = {}  # subject -> [id of version 1, id of version 2, ...]

    def register(self, subject, schema_type, schema):
        key = (schema_type, schema)
        with self._lock:
            schema_id = self._ids.get(key)
            if schema_id is None:
                schema_id = len(self._schemas) + 1
                self._schemas[schema_id] = key
                self._ids[key] = schema_id
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def lookup(self, subject, schema_type, schema):
        with self._lock:
            versions = self._subjects.get(subject)
            if versions is None:
                raise subject_not_found(subject)
            schema_id = self._ids.get((schema_type, schema))
            if schema_id not in versions:
                raise ApiError(404, 40403, "Schema not found")
            return self._version(subject, versions, versions.index(schema_id) + 1)

    def schema(self, schema_id):
        with self._lock:
            found = self._schemas.get(schema_id)
        if found is None:
            raise ApiError(404, 40403, "Schema not found")
        return with_type({"schema": found[1]}, found[0])

    def subjects(self):
        with self._lock:
            return list(self._subjects)

    def versions(self, subject):
        with self._lock:
            versions = self._subjects.get(subject)
            if versions is None:
                raise subject_not_found(subject)
            return list(range(1, len(versions) + 1))

    def version(self, subject, version):
        with self._lock:
            versions = self._subjects.get(subject)
            if versions is None:
                raise subject_not_found(subject)
            if version == "latest" or version == "-1":
                number = len(versions)
            else:
                try:
                    number = int(version)
                except ValueError:
                    number = 0
                if number < 1:
                    raise ApiError(
                        422,
                        42202,
                        "The specified version is not a valid version id. Allowed values are"
                        " between [1, 2^31-1] and the string \"latest\"",
                    )
                if number > len(versions):
                    raise ApiError(404, 40402, f"Version {version} not found.")
            return self._version(subject, versions, number)

    def _version(self, subject, versions, number):
        schema_id = versions[number - 1]
        schema_type, schema = self._schemas[schema_id]
        answer = {"subject": subject, "version": number, "id": schema_id}
        with_type(answer, schema_type)
        answer["schema"] = schema
        return answer


def with_type(answer, schema_type):
    if schema_type != "AVRO":
        answer["schemaType"] = schema_type
    return answer


def schema_of(body):
    """The (schema_type, schema) of a request body, or an ApiError."""
    try:
        request = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, 400, f"Unrecognized request body: {err}") from None
    if not isinstance(request, dict):
        raise ApiError(422, 42201, "Invalid schema: the body must be a JSON object")
    schema = request.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise ApiError(422, 42201, "Invalid schema: \"schema\" must be a non-empty string")
    schema_type = request.get("schemaType") or "AVRO"
    if not isinstance(schema_type, str) or schema_type.upper() not in SCHEMA_TYPES:
        raise ApiError(422, 42201, f"Invalid schema: unknown schemaType {schema_type!r}")
    if request.get("references"):
        raise ApiError(422, 42201, "Invalid schema: references are not supported by this stand-in")
    return schema_type.upper(), schema


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect
    server_version = "ferris-schema-registry-stand-in"
    registry = None  # set in main()
    verbose = False

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        try:
            body = self._body()
            status, answer = 200, self._route(method, body)
        except ApiError as err:
            status, answer = err.status, {"error_code": err.error_code, "message": err.message}
        except Exception as err:  # a bug here: answer as the real registry does, and go on
            status, answer = 500, {"error_code": 50001, "message": f"Error in the backend: {err}"}
        self._send(status, answer)

    def _route(self, method, body):
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if parts == []:
            allow(method, "GET")
            return {}
        if parts == ["subjects"]:
            allow(method, "GET")
            return self.registry.subjects()
        if len(parts) == 2 and parts[0] == "subjects":
            allow(method, "POST")
            return self.registry.lookup(parts[1], *schema_of(body))
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            if method == "POST":
                return {"id": self.registry.register(parts[1], *schema_of(body))}
            allow(method, "GET")
            return self.registry.versions(parts[1])
        if len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
            allow(method, "GET")
            return self.registry.version(parts[1], parts[3])
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            allow(method, "GET")
            try:
                schema_id = int(parts[2])
            except ValueError:
                raise ApiError(404, 40403, "Schema not found") from None
            return self.registry.schema(schema_id)
        raise ApiError(404, 404, "HTTP 404 Not Found")

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format, *args):
        if self.verbose:
            super().log_message(format, *args)


def allow(method, allowed):
    if method != allowed:
        raise ApiError(405, 405, "HTTP 405 Method Not Allowed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1; 0 for any free one")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args()

    Handler.registry = Registry()
    Handler.verbose = args.verbose
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
